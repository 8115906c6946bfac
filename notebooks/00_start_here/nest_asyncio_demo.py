"""What nest_asyncio does, in a process of its own (never in the course's kernel)."""

import asyncio


async def answer() -> int:
    return 42


async def cell() -> None:
    # Inside a running event loop, like a notebook cell.
    coroutine = answer()
    try:
        asyncio.run(coroutine)
    except RuntimeError as exc:
        coroutine.close()  # refused, never started: close it (no "never awaited" warning)
        print("before apply():", exc)

    import nest_asyncio

    nest_asyncio.apply()  # patches asyncio for the whole process, every loop in it
    print("after apply(): asyncio.run ->", asyncio.run(answer()))
    print("asyncio.run now comes from:", asyncio.run.__module__)


asyncio.run(cell())
