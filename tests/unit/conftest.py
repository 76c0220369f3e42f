"""Options for the unit tests: ``--update-golden`` rewrites expected golden files.

Run as ``python -m pytest tests/unit --update-golden`` (the option is declared
here, so pass the tests/unit path for pytest to load this file first).
"""


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/**/NAME.json from the current parser output (review the diff!)",
    )
