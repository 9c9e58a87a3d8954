# A small image of the bot: python:3.11-slim, runs as a non-root user, the database on /data.
# Build and run: see README ("Deployment"). The command is the one the tests start: python -m bot.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY storage ./storage
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin smmbot \
    && mkdir /data && chown smmbot:smmbot /data

USER smmbot
ENV DATABASE_PATH=/data/bot.sqlite3
VOLUME ["/data"]
# Webhook mode listens on WEBHOOK_PORT (8080); polling mode serves /healthz on HEALTH_PORT.
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
