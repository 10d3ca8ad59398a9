"""A rule's payload options evaluated on one buffer, as Suricata inspects them.

The prefilter (a multi-pattern scan of the stream, in compiled code) says
which rules may match; this module decides, for those candidates only, whether
the whole chain of content, pcre, byte_* and isdataat options holds on the
buffer.  Semantics follow Suricata's content inspection:

- ``offset``/``depth`` are absolute: the match lies in
  ``[offset, offset + depth)`` of the buffer.
- ``distance``/``within`` are relative to the end of the previous match: the
  match starts at or after ``prev + distance`` and ends at or before
  ``prev + distance + within``.
- A negated content must not occur in its window and moves nothing.
- When a later relative option fails, the previous content is tried at its
  next occurrence (backtracking), up to a step budget (a rule cannot cost
  unbounded time on crafted input; running out counts as no match).
- ``byte_jump`` and ``byte_extract`` move the position like a match does;
  ``byte_test`` and ``isdataat`` do not.

>>> from middleboxes.ids.rules import parse_rule
>>> r = parse_rule('alert tcp any any -> any any (content:"a"; content:"b"; within:2; sid:1;)')
>>> matches(r.matches, b"a..ab"), matches(r.matches, b"a..b")
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass

from .rules import ByteExtract, ByteJump, ByteTest, Content, IsDataAt, Pcre

MAX_STEPS = 3000   # Suricata's default inspection recursion limit is of this order


class _Budget(Exception):
    pass


@dataclass
class Result:
    matched: bool
    end: int = 0          # offset just past the last positive match (0 if none)
    steps: int = 0
    exhausted: bool = False


def _lower(b: bytes) -> bytes:
    return b.lower()


def _read_int(buf: bytes, at: int, nbytes: int, big: bool, base):
    """(value, ok) of nbytes at `at`, binary or text in base hex/dec/oct."""
    if at < 0 or at + nbytes > len(buf):
        return 0, False
    raw = buf[at:at + nbytes]
    if base is None:
        return int.from_bytes(raw, "big" if big else "little"), True
    try:
        return int(raw.decode("ascii").strip(), {"hex": 16, "dec": 10, "oct": 8}[base]), True
    except (UnicodeDecodeError, ValueError):
        return 0, False


def _value(v, env: dict) -> int:
    return env[v] if isinstance(v, str) else v


def _bitmask(v: int, mask) -> int:
    if mask is None:
        return v
    v &= mask
    while mask and not mask & 1:   # shift right by the mask's trailing zeros
        mask >>= 1
        v >>= 1
    return v


class _Eval:
    def __init__(self, chain: list, buf: bytes, max_steps: int):
        self.chain = chain
        self.buf = buf
        self.lbuf = None
        self.steps = 0
        self.max_steps = max_steps
        self.end = 0

    def lowered(self) -> bytes:
        if self.lbuf is None:
            self.lbuf = self.buf.lower()
        return self.lbuf

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise _Budget()

    def run(self, i: int, prev: int, env: dict) -> bool:
        """Options i.. hold, given the previous match ended at prev."""
        self.tick()
        if i == len(self.chain):
            self.end = prev
            return True
        m = self.chain[i]
        if isinstance(m, Content):
            return self._content(i, m, prev, env)
        if isinstance(m, Pcre):
            return self._pcre(i, m, prev, env)
        if isinstance(m, ByteTest):
            return self._byte_test(m, prev, env) and self.run(i + 1, prev, env)
        if isinstance(m, ByteJump):
            to = self._byte_jump(m, prev, env)
            return to is not None and self.run(i + 1, to, env)
        if isinstance(m, ByteExtract):
            got = self._byte_extract(m, prev, env)
            if got is None:
                return False
            to, val = got
            return self.run(i + 1, to, dict(env, **{m.name: val}))
        if isinstance(m, IsDataAt):
            # Suricata: relative holds while prev + n <= len (n more bytes
            # exist after the match); absolute while n < len
            n = _value(m.offset, env)
            present = prev + n <= len(self.buf) if m.relative else n < len(self.buf)
            return present != m.negated and self.run(i + 1, prev, env)
        raise TypeError(f"unknown match {m!r}")

    def _window(self, c: Content, prev: int, env: dict) -> tuple[int, int]:
        n = len(self.buf)
        if c.relative:
            dist = _value(c.distance, env) if c.distance is not None else 0
            lo = prev + dist
            hi = lo + _value(c.within, env) if c.within is not None else n
        else:
            lo = _value(c.offset, env) if c.offset is not None else 0
            hi = lo + _value(c.depth, env) if c.depth is not None else n
        return max(lo, 0), min(hi, n)

    def _content(self, i: int, c: Content, prev: int, env: dict) -> bool:
        lo, hi = self._window(c, prev, env)
        hay = self.lowered() if c.nocase else self.buf
        pat = c.pattern.lower() if c.nocase else c.pattern
        if c.negated:
            found = hay.find(pat, lo, hi) >= 0 if hi - lo >= len(pat) else False
            if c.endswith and found:
                found = hay.endswith(pat, lo, hi) and hi == len(self.buf)
            return not found and self.run(i + 1, prev, env)
        at = hay.find(pat, lo, hi) if hi - lo >= len(pat) else -1
        while at >= 0:
            end = at + len(pat)
            if not c.endswith or end == len(self.buf):
                if self.run(i + 1, end, env):
                    return True
            self.tick()
            at = hay.find(pat, at + 1, hi)
        return False

    def _pcre(self, i: int, p: Pcre, prev: int, env: dict) -> bool:
        # a relative pcre sees the buffer from the previous match on, so ^
        # anchors there (as PCRE does on Suricata's offset subject)
        start = prev if p.relative else 0
        view = memoryview(self.buf)[start:]
        rx = p.compiled
        if p.negated:
            found = (rx.match(view) if p.anchored_start else rx.search(view)) is not None
            return not found and self.run(i + 1, prev, env)
        pos = 0
        while pos <= len(view):
            mt = rx.match(view, pos) if p.anchored_start else rx.search(view, pos)
            if mt is None:
                return False
            if self.run(i + 1, start + mt.end(), env):
                return True
            if p.anchored_start:
                return False
            self.tick()
            pos = mt.start() + 1
        return False

    def _byte_test(self, b: ByteTest, prev: int, env: dict) -> bool:
        at = _value(b.offset, env) + (prev if b.relative else 0)
        v, ok = _read_int(self.buf, at, b.nbytes, b.big_endian, b.string)
        if not ok:
            return False
        v = _bitmask(v, b.bitmask)
        want = _value(b.value, env)
        op = b.op
        res = {"<": v < want, ">": v > want, "=": v == want, "<=": v <= want,
               ">=": v >= want, "&": (v & want) != 0, "^": (v ^ want) != 0}[op]
        return res != b.negated

    def _byte_jump(self, b: ByteJump, prev: int, env: dict):
        at = _value(b.offset, env) + (prev if b.relative else 0)
        v, ok = _read_int(self.buf, at, b.nbytes, b.big_endian, b.string)
        if not ok:
            return None
        v = _bitmask(v, b.bitmask) * b.multiplier
        if b.from_end:
            to = len(self.buf) + v
        elif b.from_beginning:
            to = v
        else:
            to = at + b.nbytes + v
        if b.align and to % 4:
            to += 4 - to % 4
        to += b.post_offset
        if to < 0 or to > len(self.buf):
            return None
        return to

    def _byte_extract(self, b: ByteExtract, prev: int, env: dict):
        at = b.offset + (prev if b.relative else 0)
        v, ok = _read_int(self.buf, at, b.nbytes, b.big_endian, b.string)
        if not ok:
            return None
        v *= b.multiplier
        if b.align and v % b.align:
            v += b.align - v % b.align
        return at + b.nbytes, v


def inspect(chain: list, buf: bytes, max_steps: int = MAX_STEPS) -> Result:
    """Whether the options hold on buf, and where the last match ended."""
    ev = _Eval(chain, buf, max_steps)
    try:
        ok = ev.run(0, 0, {})
    except _Budget:
        return Result(False, 0, ev.steps, True)
    return Result(ok, ev.end if ok else 0, ev.steps)


def matches(chain: list, buf: bytes) -> bool:
    return inspect(chain, buf).matched
