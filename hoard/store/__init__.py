"""The state store: SQLAlchemy 2 models, Alembic migrations, and the queries Hoard needs."""
