"""Unrelated tables that make the demo app's schema the size of a real service's."""

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, MetaData, Numeric, String, Table, Text, func


def add_tables(metadata: MetaData, n: int) -> None:
    """Add ``n`` tables, each with a few columns, a unique name, an index and a foreign key to the previous one."""
    previous = None
    for i in range(n):
        columns = [
            Column("id", Integer, primary_key=True),
            Column("name", String(100), nullable=False, unique=True),
            Column("description", Text),
            Column("amount", Numeric(12, 2)),
            Column("created_at", DateTime, server_default=func.now()),
        ]
        if previous is not None:
            columns.append(Column(f"{previous}_id", ForeignKey(f"{previous}.id"), index=True))
        table = Table(f"extra_{i:02d}", metadata, *columns)
        Index(f"ix_extra_{i:02d}_created_at", table.c.created_at)
        previous = table.name
