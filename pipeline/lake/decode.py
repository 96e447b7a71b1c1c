"""Decode a ``GET /sessions`` page body straight to Arrow, without Python objects per row.

``pyarrow.json`` parses the body in C++ with the GIL released, so the paging threads decode
pages in parallel with the thread that flattens and writes them. It is a fast path only: a body
it cannot take *exactly as the contract reads it* returns None, and the client parses that page
the ordinary way (orjson, then the dict path of :mod:`pipeline.lake.flatten` with all its
checks). That covers, among others: any field we do not know (it must land in
``extra_fields``), a value of another JSON type than expected, a ``null`` session, invalid
UTF-8 or lone surrogates, a ``responseStatus`` error, a pretty-printed body, and an
``applicationData`` that is not a flat object of strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pipeline.evo.client import DecodedPage
from pipeline.lake import schemas

_APPLICATION_DATA = "applicationData"
# applicationData is an object with arbitrary keys: Arrow's JSON reader cannot read it as a map,
# so it is left to inference (a struct of the keys seen on the page) and converted below.
_MEMBER_JSON = pa.struct([f for f in schemas.MEMBER_WIRE if f.name != _APPLICATION_DATA])
_SESSION_JSON = pa.struct(
    [
        pa.field("members", pa.list_(_MEMBER_JSON)) if f.name == "members" else f
        for f in schemas.SESSION_WIRE
    ]
)
_MAP = schemas.MEMBER_WIRE.field(_APPLICATION_DATA).type
_PAGE_JSON = pa.schema(
    [
        pa.field("items", pa.list_(_SESSION_JSON)),
        pa.field("totalCount", pa.int64()),
        pa.field("totalPages", pa.int64()),
        pa.field("hasMorePages", pa.bool_()),
    ]
)
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_PAGE_JSON, unexpected_field_behavior="infer")
_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError)
# Inference reads a struct's "missing" and "null" alike; an explicit null inside
# applicationData must survive as a key with a null value, so such pages take the dict path.
# Found by an RE2 regex that Arrow runs without the GIL, on every page: strings are skipped
# whole, so a "null" inside a value does not count, and on valid JSON a "null" outside strings
# inside the object can only be a null value.
_APPLICATION_DATA_KEY = b'"applicationData"'
_NULL_IN_APPLICATION_DATA = r'"applicationData"\s*:\s*\{(?:"(?:[^"\\]|\\.)*"|[^"{}])*?null'
# The same in Python's re (possessive, as it backtracks), for a body that spells the key with
# \u escapes: only then is it run.
_NULL_AFTER_KEY = rb'\s*:\s*\{(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"|[^"{}n]++|n(?!ull\b))*+null'
_NULL_IN_ESCAPED_APPLICATION_DATA = re.compile(
    b'"'
    + b"".join(
        rb"(?:%s|\\u00(?i:%02x))" % (re.escape(c).encode(), ord(c)) for c in _APPLICATION_DATA
    )
    + b'"'
    + _NULL_AFTER_KEY
)


def _explicit_null_in_application_data(text: bytes, body: pa.StringArray) -> bool:
    """``body``: ``text`` as a one-string Arrow array, already checked to be UTF-8. The check
    runs on every page; in Arrow it leaves the GIL to the other paging threads (in Python it
    held it for 0.2 ms per page)."""
    if (
        text.find(_APPLICATION_DATA_KEY) >= 0
        and pc.any(pc.match_substring_regex(body, _NULL_IN_APPLICATION_DATA)).as_py()
    ):
        return True
    return _has_unicode_escape(text) and _NULL_IN_ESCAPED_APPLICATION_DATA.search(text) is not None


def _has_unicode_escape(text: bytes, escape: bytes = b"u00") -> bool:
    """Whether the body holds a ``\\u00`` escape (or ``\\`` + ``escape``). Bodies hold few
    backslashes: visiting them (memchr) is several times cheaper than scanning for the bytes,
    up to a point."""
    position = text.find(b"\\")
    for _ in range(64):
        if position < 0:
            return False
        if text.startswith(escape, position + 1):
            return True
        position = text.find(b"\\", position + 2)  # past the escaped character
    return position >= 0 and text.find(b"\\" + escape, position) >= 0


def decode_sessions_page(body: bytes) -> DecodedPage | None:
    """The page's sessions as Arrow (pass ``columns`` to :func:`to_wire`), or None to parse
    it as dicts.

    Runs in the paging threads, so it re-takes the GIL as rarely as it can: once after the
    parse, which releases it. Anything that would release it again (Arrow compute) is left
    to :func:`to_wire`, in the thread that flattens; under a busy thread each re-take can wait
    a whole switch interval.
    """
    text = body.strip()
    # One JSON document per line is what the reader takes; a raw line break can only be
    # whitespace between tokens, but the ordinary parser is the judge of such bodies.
    if not text.startswith(b"{") or b"\n" in text or b"\r" in text:
        return None
    one_string = _as_string(text)
    if not _is_utf8(one_string) or _explicit_null_in_application_data(text, one_string):
        return None
    read = _read_pages(text, 1)
    if read is None:
        return None
    table, sessions, _ = read
    return DecodedPage(
        columns=sessions,
        ids=sessions.field("id").to_pylist(),
        has_more_pages=table.column("hasMorePages")[0].as_py(),
        total_count=table.column("totalCount")[0].as_py(),
        body=body,
    )


# A body laid out as ServiceStack writes a ListResponse with simplified paging: its paging facts
# can be read from its first and last bytes.
_ITEMS_FIRST = b'{"items":['
_NO_ITEMS = re.compile(rb'\{"items":\[\s*\]')
_MORE_PAGES = b',"hasMorePages":true}'
_NO_MORE_PAGES = b',"hasMorePages":false}'


def screen_sessions_page(body: bytes) -> DecodedPage | None:
    """The paging facts of a body, read from its bytes, and every check that needs no parse:
    the body itself is parsed later, with others, by :func:`parse_screened_pages`, in the
    thread that flattens. A body laid out otherwise is decoded now (:func:`decode_sessions_page`).

    Parsing in the paging threads had four parses at once compete for the two cores with the
    threads that send the next requests; one call per batch also costs a third less CPU per
    page (each ``read_json`` call has a fixed cost: about 65 futex calls and the schema).

    Only valid UTF-8 without any ``\\u`` escape is screened (escapes may hide a lone surrogate,
    which only the ordinary parser repairs), so a screened body that the batch cannot take
    still parses with ``orjson``. The end of the list is read from the last bytes: in valid
    JSON, ``,"hasMorePages":false}`` closing the body can only be the top-level member. The
    check for an explicit null in ``applicationData`` is left to the batch, one call for all.
    """
    text = body.strip()
    if not text.startswith(_ITEMS_FIRST):
        return decode_sessions_page(body)
    if text.endswith(_MORE_PAGES):
        more = True
    elif text.endswith(_NO_MORE_PAGES):
        more = False
    else:
        return decode_sessions_page(body)
    if b"\n" in text or b"\r" in text or _has_unicode_escape(text, b"u"):
        return decode_sessions_page(body)
    if not _is_utf8(_as_string(text)):
        return None
    return DecodedPage(
        columns=None,
        ids=None,
        has_more_pages=more,
        total_count=None,
        body=body,
        empty=_NO_ITEMS.match(text) is not None,
    )


class ParsedPages(NamedTuple):
    sessions: pa.StructArray  # every body's sessions, in body order
    counts: list[int]  # how many sessions each body held
    has_more_pages: list[bool | None]


def parse_screened_pages(bodies: Sequence[bytes]) -> ParsedPages | None:
    """Screened bodies parsed in one ``read_json`` call (one JSON document per line). None if
    the batch holds a body the fast path cannot take exactly; :func:`decode_sessions_page` then
    tells which, one body at a time."""
    text = b"\n".join(body.strip() for body in bodies)
    if _explicit_null_in_application_data(text, _as_string(text)):
        return None
    read = _read_pages(text, len(bodies))
    if read is None:
        return None
    table, sessions, offsets = read
    more = table.column("hasMorePages").to_pylist()
    return ParsedPages(sessions, np.diff(offsets).tolist(), more)


def _read_pages(text: bytes, documents: int) -> tuple[pa.Table, pa.StructArray, np.ndarray] | None:
    """``documents`` page bodies, one per line, parsed in one call: the pages, every page's
    sessions as one array and the offsets of each page's in it; None unless the fast path
    takes them exactly."""
    try:
        table = pj.read_json(
            pa.BufferReader(text),
            read_options=pj.ReadOptions(block_size=len(text) + 64, use_threads=False),
            parse_options=_PARSE_OPTIONS,
        )
    except _READ_ERRORS:
        return None
    if table.num_rows != documents or set(table.column_names) != set(_PAGE_JSON.names):
        return None  # several documents, or a field we do not know (responseStatus...)
    column = table.column("items")
    if column.num_chunks != 1:
        return None
    items = column.chunk(0)
    if items.null_count or items.offset:
        return None
    offsets = items.offsets.to_numpy()
    sessions = items.values
    if offsets[0] != 0 or offsets[-1] != len(sessions):
        return None
    if sessions.null_count or sessions.offset or not _is_wire_shape(sessions):
        return None
    return table, sessions, offsets


def to_wire(pages: Sequence[pa.StructArray]) -> pa.StructArray:
    """Decoded pages' sessions as one ``SESSION_WIRE`` array: ``applicationData`` becomes a
    map. Each page inferred its own ``applicationData`` struct (the keys it saw, in the order
    it saw them); Arrow unifies them by name as it concatenates the pages, in one call, so
    that the conversion runs once per batch: every Arrow call that releases the GIL may wait
    a switch interval to take it back while the paging threads are busy."""
    tables = [pa.Table.from_struct_array(page) for page in pages]
    table = (
        tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    )
    sessions = table.to_struct_array().combine_chunks()
    members = sessions.field("members")
    flat = members.values
    data = _application_data(flat)
    children = [
        data if f.name == _APPLICATION_DATA else flat.field(f.name) for f in schemas.MEMBER_WIRE
    ]
    rebuilt = pa.StructArray.from_arrays(
        children, fields=list(schemas.MEMBER_WIRE), mask=_null_mask(flat)
    )
    members = pa.ListArray.from_arrays(
        members.offsets, rebuilt, type=pa.list_(schemas.MEMBER_WIRE), mask=_null_mask(members)
    )
    columns = [
        members if f.name == "members" else sessions.field(f.name) for f in schemas.SESSION_WIRE
    ]
    return pa.StructArray.from_arrays(columns, fields=list(schemas.SESSION_WIRE))


def _application_data(members: pa.StructArray) -> pa.Array:
    """The members' ``applicationData`` as a map; null where no member of the batch had one
    (inference then gives it the null type, or no field at all)."""
    index = members.type.get_field_index(_APPLICATION_DATA)
    if index < 0 or not pa.types.is_struct(members.type.field(index).type):
        return pa.nulls(len(members), _MAP)
    return _struct_to_map(members.field(index))


def _is_wire_shape(sessions: pa.StructArray) -> bool:
    """Every session field of the type the contract reads (inference added none), members
    without unknown fields, and applicationData a flat object of strings where present."""
    shape = sessions.type
    if shape.num_fields != len(schemas.SESSION_WIRE):
        return False
    for field in schemas.SESSION_WIRE:
        index = shape.get_field_index(field.name)
        if index < 0:
            return False
        if field.name != "members" and shape.field(index).type != field.type:
            return False
    members = sessions.field("members")
    if members.offset or members.values.offset:
        return False
    member = members.type.value_type
    known = {f.name: f.type for f in _MEMBER_JSON}
    for index in range(member.num_fields):
        field = member.field(index)
        if field.name == _APPLICATION_DATA:
            if not _is_flat_text_object(field.type):
                return False
        elif known.get(field.name) != field.type:
            return False
    return True


def _is_flat_text_object(kind: pa.DataType) -> bool:
    if pa.types.is_null(kind):  # null or absent on every member of the page
        return True
    if not pa.types.is_struct(kind):  # a string, a list...
        return False
    return all(
        pa.types.is_string(kind.field(i).type) or pa.types.is_null(kind.field(i).type)
        for i in range(kind.num_fields)
    )


def _struct_to_map(data: pa.Array) -> pa.Array:
    """A struct of string fields (keys as inferred over the page) as a map of its non-null
    fields, in field order.

    Keys come in the order the page first showed them, not each object's own order: a map's
    order carries nothing, and the struct cannot tell it. Validity is read from the bitmaps
    with numpy, not Arrow compute, which would release and re-take the GIL once per key.
    """
    fields = [data.field(i) for i in range(data.type.num_fields)]
    rows = len(data)
    if not fields:
        offsets = pa.array(np.zeros(rows + 1, dtype=np.int32))
        empty = pa.array([], pa.string())
        return pa.MapArray.from_arrays(offsets, empty, empty, type=_MAP, mask=_null_mask(data))
    present = np.stack([_is_valid(f) for f in fields], axis=1)
    present &= _is_valid(data)[:, None]
    row, column = np.nonzero(present)  # row-major: each row's keys in field order
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    keys = pa.array([data.type.field(i).name for i in range(len(fields))], pa.string())
    # A field inferred as null type holds no value: its slots are never taken.
    values = pa.concat_arrays(
        [f if pa.types.is_string(f.type) else pa.nulls(rows, pa.string()) for f in fields]
    )
    return pa.MapArray.from_arrays(
        pa.array(offsets),
        keys.take(pa.array(column)),
        values.take(pa.array(column * rows + row)),
        type=_MAP,
        mask=_null_mask(data),
    )


def _is_valid(array: pa.Array) -> np.ndarray:
    """The array's validity as booleans, from its bitmap."""
    if pa.types.is_null(array.type):
        return np.zeros(len(array), dtype=bool)
    bitmap = array.buffers()[0]
    if bitmap is None or not array.null_count:
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(
        np.frombuffer(bitmap, dtype=np.uint8), count=array.offset + len(array), bitorder="little"
    )
    return bits[array.offset :].astype(bool)


def _as_string(text: bytes) -> pa.StringArray:
    """``text`` as a one-string Arrow array, without copying it (nor checking it)."""
    offsets = pa.py_buffer(np.array([0, len(text)], dtype=np.int32))
    return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(text)])


def _is_utf8(body: pa.StringArray) -> bool:
    """Arrow's JSON reader passes invalid UTF-8 through; the ordinary parser repairs it."""
    try:
        body.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _null_mask(array: pa.Array) -> pa.Array | None:
    if not array.null_count:
        return None
    return array.is_null()
