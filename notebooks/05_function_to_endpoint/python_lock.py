"""fixed_app with its booking step in an asyncio.Lock: one transfer at a time, in this process."""

import asyncio

import fixed_app

lock = asyncio.Lock()  # one per process: every worker has its own


async def book_locked(session, request) -> dict:
    async with lock:
        return await fixed_app.book(session, request)


app = fixed_app.make_app(book_locked)
