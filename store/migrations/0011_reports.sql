-- The indexes the reports read through (`store/reports.py`, docs/reports.md): each report
-- reads the rows it groups from an index alone, without visiting the table.

-- The conversion report's win rate and cycle time: the opportunities closed in a period.
CREATE INDEX opportunities_closed ON opportunities (closed_at)
    INCLUDE (process_id, status, created_at) WHERE status IN ('won', 'lost');

-- The forecast: the open opportunities in the forecast with a close date, by process.
CREATE INDEX opportunities_forecast ON opportunities (process_id, expected_close_date)
    INCLUDE (owner, forecast_category, currency, amount, probability)
    WHERE status = 'open' AND include_in_forecast AND expected_close_date IS NOT NULL;
