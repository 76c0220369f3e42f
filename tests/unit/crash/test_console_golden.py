"""Every tests/golden/console/NAME.log parses to exactly NAME.json's crashes."""
import pytest

import golden_console as golden


@pytest.mark.parametrize("name", golden.cases())
def test_console_golden(name, request):
    text, data = golden.load(name)
    got = golden.expected(text)
    if request.config.getoption("--update-golden", default=False):
        data = {"source": data.get("source", "TODO: say where this log comes from"), "crashes": got}
        golden.write(name, data)
    assert "crashes" in data, f"{name}.json missing: run pytest tests/unit --update-golden and review it"
    assert data.get("source"), f"{name}.json must say where the log comes from"
    assert got == data["crashes"]


def test_console_golden_corpus_is_not_empty():
    assert len(golden.cases()) >= 9
