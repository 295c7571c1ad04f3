from faithaudit.audits.prompt.sentences import split_sentences


def texts(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def test_spans_tile_the_text_and_split_on_sentence_ends():
    text = 'Dr. Smith met J. R. Tolkien in 1950. He liked it!  Did she? "Yes," she said. (Then) it rained.  '
    parts = texts(text)
    assert "".join(parts) == text
    assert [p.strip() for p in parts] == [
        "Dr. Smith met J. R. Tolkien in 1950.",
        "He liked it!",
        "Did she?",
        '"Yes," she said.',
        "(Then) it rained.",
    ]


def test_no_boundary_gives_one_sentence():
    assert texts("no capital after this. lower case goes on") == ["no capital after this. lower case goes on"]
    assert texts("U.S. forces e.g. Army units") == ["U.S. forces e.g. Army units"]


def test_runs_of_punctuation_split_in_linear_time():
    import time

    text = "Wait" + "." * 20_000 + " Then it went on! " * 10
    t0 = time.perf_counter()
    parts = texts(text)
    assert time.perf_counter() - t0 < 0.5
    assert "".join(parts) == text and len(parts) == 11
