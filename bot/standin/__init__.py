"""Stand-ins for Telegram: the Bot API with its rules (tests, `smm-bot try`) and a web chat."""
