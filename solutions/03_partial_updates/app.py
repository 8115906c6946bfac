"""Users API: read a user, and change some of their fields with PATCH.

Reference answer for exercise 03 (partial updates).
"""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import MISSING, BaseModel, ConfigDict, Field
from sqlalchemy import String, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))          # NOT NULL
    email: Mapped[str] = mapped_column(String(200))         # NOT NULL
    city: Mapped[str | None] = mapped_column(String(100))   # nullable
    phone: Mapped[str | None] = mapped_column(String(40))   # nullable
    version: Mapped[int]                                    # 1, then +1 on every UPDATE


class UserOut(BaseModel):
    id: int
    name: str
    email: str
    city: str | None
    phone: str | None


# Each text as long as its column at most. A str with a limit also refuses a string that is not
# valid Unicode (a lone surrogate, "\ud800" in a JSON body) with a 422, where a plain str lets it
# through to the database driver, which cannot encode it: a 500 (`course probe` found it).
Name = Annotated[str, Field(max_length=100)]
Email = Annotated[str, Field(max_length=200)]
City = Annotated[str, Field(max_length=100)]
Phone = Annotated[str, Field(max_length=40)]


class UserPatch(BaseModel):
    """The fields a client may change. It sends only those it changes."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored
    # May be left out (MISSING), never null: the OpenAPI schema says `string`, not `string or null`.
    name: Name | MISSING = MISSING
    email: Email | MISSING = MISSING
    # May be left out; null clears the column.
    city: City | None | MISSING = MISSING
    phone: Phone | None | MISSING = MISSING


# An id in the URL is positive and fits SQLite's 8-byte INTEGER: a larger one would make the
# driver raise OverflowError (a 500). Out of range is bad input, answered with a 422.
UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///users.db"))
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(title="Users", lifespan=lifespan)


# Given (module 05 explains it): FastAPI's default 422 answer echoes every rejected value, and JSON
# cannot carry NaN, so {"city": NaN} would be a 500. This answer names the field without the value.
@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


async def get_session(request: Request):
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def etag(user: User) -> str:
    return f'"{user.version}"'  # a strong ETag: a quoted string


@app.get("/users/{user_id}", response_model=UserOut)
async def read_user(user_id: UserId, session: SessionDep, response: Response) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    response.headers["ETag"] = etag(user)
    return user


@app.patch("/users/{user_id}", response_model=UserOut)
async def patch_user(user_id: UserId, patch: UserPatch, session: SessionDep, response: Response,
                     if_match: Annotated[str | None, Header()] = None) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    checked = if_match is not None and if_match.strip() != "*"  # "*": any version will do
    if checked and if_match.strip() != etag(user):
        raise HTTPException(status_code=412, detail="the user changed since you read it: GET it again")
    changes = patch.model_dump(exclude_unset=True)
    if changes:
        # One statement checks and writes: of two PATCHes sent with the same If-Match, only the
        # first still finds the version it was sent for. Without If-Match, nothing to check.
        where = [User.id == user_id] + ([User.version == user.version] if checked else [])
        written = await session.execute(update(User).where(*where).values(**changes, version=User.version + 1),
                                        execution_options={"synchronize_session": False})
        if written.rowcount == 0:  # changed by another request between our read and our write
            raise HTTPException(status_code=412, detail="the user changed since you read it: GET it again")
        await session.commit()
        await session.refresh(user)  # the row as stored now, new version included
    response.headers["ETag"] = etag(user)
    return user
