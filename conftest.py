# The pinharness pytest plugin (also installed as a pytest11 entry point of the same name).
pytest_plugins = ["harness.pytest_plugin"]
