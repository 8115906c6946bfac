"""Which partial update does the lesson's endpoint implement? Two standard formats, and what each
does to a nested object (a JSON column, an embedded address).

RFC 7396, JSON Merge Patch (media type application/merge-patch+json): the body looks like the
resource. A member replaces the value it names, null removes it, and an object is merged into the
object it names, recursively. An array is replaced whole. It cannot set a value to null.

RFC 6902, JSON Patch (application/json-patch+json): a list of operations on JSON Pointer paths,
applied in order, all or nothing: add, remove, replace, move, copy, and test (a precondition:
the patch fails if the value at the path is not the one given).
"""


def merge_patch(target, patch):
    """RFC 7396, section 2, as the RFC writes it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def sent_fields(target: dict, patch: dict) -> dict:
    """What `setattr` over `model_dump(exclude_unset=True)` does: each sent field replaced whole,
    null stored as null (a column cannot be removed: null clears it)."""
    return {**target, **patch}
