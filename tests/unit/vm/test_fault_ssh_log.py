"""Fault injection: paramiko's transport-thread tracebacks go to the guest's ssh.log, never to the
terminal (issue 16). A local server that drops every connection makes paramiko log
'Exception (client): Error reading SSH protocol banner' with a traceback."""
import logging
import socket
import threading

import pytest

from harness.errors import VMError
from harness.vm.guest import Guest, SSHKey, SSHLog

pytestmark = pytest.mark.fault


@pytest.fixture
def rude_server():
    """127.0.0.1:<port> that accepts and at once closes (or answers garbage)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        n = 0
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            n += 1
            if n % 2:
                conn.sendall(b"garbage, not an SSH banner\r\n")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()


@pytest.mark.parametrize("attempt", range(3))
def test_paramiko_traceback_goes_to_the_artifacts_log(tmp_path, rude_server, caplog, capfd, attempt):
    caplog.set_level(logging.DEBUG)
    log = SSHLog(tmp_path / "ssh.log", f"paramiko.pinharness.test{attempt}")
    try:
        with pytest.raises(VMError, match="SSH to the guest"):
            Guest(rude_server, SSHKey.generate(), log_channel=log.channel).connect(timeout=1.0)
    finally:
        log.close()
    text = (tmp_path / "ssh.log").read_text()
    assert "Error reading SSH protocol banner" in text and "Traceback" in text
    assert not [r for r in caplog.records if r.name.startswith("paramiko")]  # nothing propagated
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "protocol banner" not in err and "protocol banner" not in out


def test_after_close_late_lines_go_nowhere(tmp_path, capfd):
    log = SSHLog(tmp_path / "ssh.log", "paramiko.pinharness.late")
    log.close()
    logging.getLogger("paramiko.pinharness.late").error("Exception (client): late line")
    assert "late line" not in capfd.readouterr().err
