"""Anti-pattern: a raw aiosqlite connection kept in a global and never closed.

Run as a script: DB_PATH=shop.db python raw_connection_global.py  (CLOSE=1 closes it: the fix).
"""

import asyncio
import os

import aiosqlite

conn: aiosqlite.Connection | None = None  # "opened once, reused everywhere"


async def main() -> None:
    global conn
    conn = await aiosqlite.connect(os.environ["DB_PATH"])  # starts a (non-daemon) worker thread
    async with conn.execute("SELECT count(*) FROM items") as cursor:
        print("items:", (await cursor.fetchone())[0])
    if os.environ.get("CLOSE") == "1":
        await conn.close()  # stops the worker thread


asyncio.run(main())
print("main() finished, interpreter exiting", flush=True)
