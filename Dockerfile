# The worker image for docker-compose.yml (production runs against a real Temporal server and
# PostgreSQL, given by TEMPORAL_ADDRESS and DATABASE_URL).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sales sales
COPY store store
COPY workflows workflows
COPY activities activities
COPY starter starter
COPY runtime runtime
COPY worker.py ./
COPY examples examples
RUN pip install --no-cache-dir . && useradd --create-home app
USER app
CMD ["opportunities-worker"]
