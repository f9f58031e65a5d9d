"""What both parsers (request and response) keep of a head in progress, and how they bound it.

llhttp hands over each header field only once it is complete and buffers an unfinished one
without a limit of its own; chunk extensions and trailers likewise. So each side counts the bytes
fed while a head (or chunk metadata) is unfinished, and gives up past its cap.
"""

from __future__ import annotations


class HeadParsing:
    __slots__ = ("_body_seen", "_hbytes", "_head_first", "_head_tail", "_headers", "_in_head", "_index")
    _headers: list[tuple[str, str]]
    _index: dict[str, list[str]]
    _hbytes: int
    _in_head: bool
    _head_first: bool
    _head_tail: int
    _body_seen: bool

    def _reset_head(self) -> None:
        self._headers = []
        self._index = {}
        self._hbytes = 0
        self._in_head = False
        self._head_first = False
        self._head_tail = 0

    def _feed_overflow(self, fed: int, cap: int, chunked_body: bool) -> str | None:
        """After a feed of ``fed`` bytes: "head" when an unfinished head has passed ``cap``,
        "metadata" when chunk framing or trailers have (only while a chunked body is read), else None."""
        if self._in_head:
            return "head" if self._head_overflow(fed, cap) else None
        if chunked_body and self._metadata_overflow(fed, cap):
            return "metadata"
        return None

    def _head_overflow(self, fed: int, cap: int) -> bool:
        """``fed`` bytes arrived while a head is unfinished: whether more than ``cap`` have now
        (the feed that began the head is what on_url/on_header count exactly)."""
        if self._head_first:
            self._head_first = False
            return False
        self._head_tail += fed
        return self._head_tail > cap

    def _metadata_overflow(self, fed: int, cap: int) -> bool:
        """The same for chunk framing and trailers, counted from the last body bytes seen."""
        if self._body_seen:
            self._body_seen = False
            self._head_tail = 0
            return False
        self._head_tail += fed
        return self._head_tail > cap
