# The pinharness pytest plugin (also installed as a pytest11 entry point of the same name),
# and pytester for the plugin's own end-to-end tests (tests/vm/test_plugin.py).
pytest_plugins = ["harness.pytest_plugin", "pytester"]
