"""The bot's business rules, free of Telegram: handlers and jobs call these, and so do tests.

- `accounts`  which panel account (URL and key) serves a user, roles, who may touch an order
- `placement` the one way an order is placed: draft → claim → `add` → the panel's id stored
- `tracking`  the polling schedule, batched status checks of orders and refills, back-off, and
              the one write path for every status the bot sees (change + history + outbox)
- `notices`   what a change says to the order's owner
- `actions`   status, track, refill and cancel of typed ids, with the ownership checks
- `mass_order` many `service | link | quantity` lines: checked like the wizard, each placed
              through `placement`, bounded concurrency, progress, restart-safe
- `reorder`   order again: an order's answers put back into its service's form
- `sharing`   deep-link payloads and what an inline query may show
"""
