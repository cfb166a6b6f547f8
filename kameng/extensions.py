"""Every Flask extension singleton, created once here and bound to the app in create_app()."""

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Stable constraint and index names, so Alembic migrations are deterministic.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every Kameng table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The database: models and the request-scoped session. Objects keep their loaded values
# after a commit (no reload query per attribute); code that needs fresh rows expires them.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()  # Alembic migrations under migrations/, driven by `kameng db ...`
login = LoginManager()  # sessions of super-admins, shop staff and buyers
csrf = CSRFProtect()  # a CSRF token on every form and every unsafe request
limiter = Limiter(key_func=get_remote_address)  # rate limits (Redis when REDIS_URL is set)
babel = Babel()  # translations (zh_CN, en) and locale-aware dates and numbers
