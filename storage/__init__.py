"""Storage: the only package that speaks SQL. Repository functions live in the submodules."""

from storage.catalog import CachedServices
from storage.db import close_database, open_database, transaction
from storage.orders import Observation, ObservedStatus, Order, OrderState, StatusChange
from storage.outbox import Notice, Notification, NotificationState
from storage.refills import Refill
from storage.users import OPERATOR_ACCOUNT, NotifyMode, Role, User, user_account

__all__ = [
    "OPERATOR_ACCOUNT",
    "CachedServices",
    "Notice",
    "Notification",
    "NotificationState",
    "NotifyMode",
    "Observation",
    "ObservedStatus",
    "Order",
    "OrderState",
    "Refill",
    "Role",
    "StatusChange",
    "User",
    "close_database",
    "open_database",
    "transaction",
    "user_account",
]
