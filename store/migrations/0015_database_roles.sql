-- Database roles, one per kind of client, each with only what it needs:
--   sales_setup   migrations, processes, templates, users, keys, permissions: everything;
--   sales_office  what advisers' CLI writes: contacts, seminars and their invitees,
--                 subscriptions (their secrets write-only); reads the rest;
--   sales_worker  the projection's writes and what the activities read: never keys,
--                 permissions, roles or processes (read only);
--   sales_read    reports and the CLI's reads: everything but webhook secrets.
-- Group roles (NOLOGIN): grant them to the login roles of each deployment.
-- `sales_grant_roles()` grants them on every table of the schema; `migrate` runs it after
-- every migration, so a table added later is granted too.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['sales_setup', 'sales_office', 'sales_worker', 'sales_read'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION sales_grant_roles() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    schema_name text := current_schema();
    relation record;
    office_writes text[] := ARRAY['contacts', 'events', 'event_invitees', 'subscriptions',
                                  'subscription_deliveries'];
    worker_reads_only text[] := ARRAY['signing_keys', 'permission_sets', 'role_grants',
                                      'authorization_modes', 'users', 'sales_processes',
                                      'process_retirements', 'letter_templates',
                                      'schema_migrations'];
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO sales_setup, sales_office, sales_worker, sales_read',
                   schema_name);
    EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO sales_setup', schema_name);
    EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %I TO sales_setup', schema_name);
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO sales_worker, sales_office',
                   schema_name);
    FOR relation IN
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = schema_name AND c.relkind IN ('r', 'v')
    LOOP
        IF relation.relname = 'subscriptions' THEN
            -- Everything but the secret: no one but the setup role and the worker reads it.
            EXECUTE format('GRANT SELECT (subscription_id, url, workflow_id, events, process_id,'
                           ' status, cursor_xid, cursor_position, delivered, last_delivered_at,'
                           ' created_at, created_by) ON %I.subscriptions TO sales_read,'
                           ' sales_office', schema_name);
            EXECUTE format('GRANT SELECT, UPDATE ON %I.subscriptions TO sales_worker', schema_name);
        ELSE
            EXECUTE format('GRANT SELECT ON %I.%I TO sales_read, sales_office, sales_worker',
                           schema_name, relation.relname);
        END IF;
        IF relation.relkind = 'r' AND relation.relname = ANY (office_writes) THEN
            EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %I.%I TO sales_office',
                           schema_name, relation.relname);
        END IF;
        IF relation.relkind = 'r' AND relation.relname <> 'subscriptions'
           AND NOT relation.relname = ANY (worker_reads_only) THEN
            EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %I.%I TO sales_worker',
                           schema_name, relation.relname);
        END IF;
    END LOOP;
END
$$;

SELECT sales_grant_roles();
