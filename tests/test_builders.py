"""The builders: one description of a result, rendered as text, JSON and Python."""

from __future__ import annotations

import json

from multiheap.builders import Column, JsonBuilder, PythonBuilder, TextBuilder, plural


def describe(out) -> None:
    """What a command would do: fields, an object, a list of items, a table, a note."""
    out.field("glibc", "2.36")
    out.field("tcache", True)
    out.begin("arena", title="arena")
    out.field("addr", 0x7FFFF7FA7C60, "#x")
    out.end()
    out.begin_list("chunks", title="chunks")
    for addr in (0x5000, 0x5020):
        out.item("{addr:#x} size={size:#x}", addr=addr, size=0x20)
    out.end_list()
    n = out.table("rows", [Column("addr", "chunk", "#x", 10), Column("size", "size", "d", 6)],
                  iter([(0x5000, 32), (0x5020, 48)]))
    assert n == 2
    out.note("walk stopped at 0x5040: size 0x0", addr=0x5040, reason="size 0x0")


EXPECTED = {
    "command": "ptdemo",
    "glibc": "2.36",
    "tcache": True,
    "arena": {"addr": 0x7FFFF7FA7C60},
    "chunks": [{"addr": 0x5000, "size": 0x20}, {"addr": 0x5020, "size": 0x20}],
    "rows": [{"addr": 0x5000, "size": 32}, {"addr": 0x5020, "size": 48}],
    "notes": [{"message": "walk stopped at 0x5040: size 0x0", "addr": 0x5040,
               "reason": "size 0x0"}],
}


def test_json_is_one_line_with_raw_integers():
    out = JsonBuilder("ptdemo")
    describe(out)
    doc = out.render()
    assert doc.endswith("\n") and doc.count("\n") == 1
    assert json.loads(doc) == EXPECTED


def test_python_is_the_same_tree():
    out = PythonBuilder("ptdemo")
    describe(out)
    assert out.render() == EXPECTED


def test_text_formats_for_people():
    out = TextBuilder()
    describe(out)
    text = out.render()
    for want in ("glibc: 2.36", "tcache: yes", "0x7ffff7fa7c60", "0x5000 size=0x20",
                 "note: walk stopped at 0x5040: size 0x0"):
        assert want in text, want
    assert "\x1b[" not in text


def test_text_colour_only_when_asked():
    out = TextBuilder(color=True)
    describe(out)
    assert "\x1b[" in out.render()


def test_text_streams_to_a_sink():
    got: list[str] = []
    out = TextBuilder(sink=got.append)
    describe(out)
    rest = out.render()
    assert "0x5000 size=0x20" in "".join(got) + rest


def test_tags_are_shown_and_kept():
    tags = {0x5020: "victim"}
    out = JsonBuilder("ptdemo", tags.get)
    describe(out)
    doc = json.loads(out.render())
    assert doc["chunks"][1].get("tag") == "victim"
    text = TextBuilder(tags.get)
    describe(text)
    assert "victim" in text.render()


def test_text_says_a_walk_stop_once_in_hex():
    """A ``stopped`` object reads as a line with a hex address, never a Python dict;
    after a note that told the same stop, it is not repeated."""
    out = TextBuilder()
    out.field("stopped", {"addr": 0x5040, "reason": "size 0x0"})
    out.note("walk stopped at 0x5080: bad", addr=0x5080, reason="bad")
    out.field("stopped", {"addr": 0x5080, "reason": "bad"})
    text = out.render()
    assert text.splitlines() == ["stopped at 0x5040: size 0x0",
                                 "note: walk stopped at 0x5080: bad"]
    assert "{" not in text and str(0x5040) not in text


def test_text_item_showing_its_tag_gets_it_once():
    out = TextBuilder(tagger={0x5000: "victim"}.get)
    out.item("{addr:#x}: {tag}", addr=0x5000, tag="victim")
    out.item("{addr:#x} size={size:#x}", addr=0x5000, size=0x20)
    assert out.render().splitlines() == ["0x5000: victim", "0x5000 size=0x20 [victim]"]


def test_plural():
    assert [plural(n, "tag") for n in (0, 1, 2)] == ["0 tags", "1 tag", "2 tags"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") \
        == "3 entries"
