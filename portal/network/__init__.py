"""DICOM networking: remote nodes, the query/retrieve SCP handlers, sending (C-STORE SCU, STOW-RS)."""

import select
import threading
import time

from pynetdicom import association as _association_module
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

_pynetdicom_ready = AssociationSocket.ready


def _ready(self) -> bool:
    """pynetdicom's "is there data to read" check, by poll() instead of select().

    select() cannot watch a descriptor numbered 1024 or more (FD_SETSIZE); pynetdicom then takes the
    connection for closed, and the peer, never answered, gives up after its ACSE timeout ("peer aborted").
    A server holding many files and connections gets such numbers for every new socket; poll() has no limit.
    """
    sock = self.socket
    if sock is None or self._is_connected is False:
        return False
    if not hasattr(select, "poll") or hasattr(sock, "pending"):  # no poll (Windows); TLS buffers: pynetdicom's own
        return _pynetdicom_ready.fget(self)
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))  # an error or a hang-up is "ready" too: the read then tells which
    except (OSError, ValueError):  # closed under us
        self.event_queue.put("Evt17")  # Evt17: transport connection closed
        return False


AssociationSocket.ready = property(_ready)


# pynetdicom polls. The two threads of an association, its DUL (reading the socket, sending what is queued) and
# the association itself (serving each message that arrives), sleep 1 ms whenever they find nothing to do, and
# one C-STORE meets such a sleep on its way in and on its way out: ~1.5 ms of the 5.3 ms that each instance of
# one storescu association took (Orthanc: 3.4 ms). While an association is busy (a PDU arrived within BUSY_S)
# both sleep FAST_SLEEP_S instead; an idle one sleeps 1 ms as before and costs no more CPU than it did.
BUSY_S = 0.05
FAST_SLEEP_S = 0.0002
_PYNETDICOM_SLEEP_S = 0.001  # what pynetdicom sleeps (the DUL's _run_loop_delay, the association reactor's)


def _busy(dul) -> bool:
    started = getattr(getattr(dul, "_idle_timer", None), "_start_time", None)  # restarted at every PDU received
    return started is not None and time.time() - started < BUSY_S


def _get_delay(dul) -> float:
    return FAST_SLEEP_S if _busy(dul) else dul.__dict__.get("_run_loop_delay", _PYNETDICOM_SLEEP_S)


def _set_delay(dul, value: float) -> None:
    dul.__dict__["_run_loop_delay"] = value


class _AssociationClock:
    """pynetdicom.association's `time` module: its reactor's 1 ms sleep is shortened while the association of
    the sleeping thread (an Association is its own thread) is busy; everything else is `time`'s."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds == _PYNETDICOM_SLEEP_S:
            me = threading.current_thread()
            if isinstance(me, Association) and _busy(me.dul):
                seconds = FAST_SLEEP_S
        time.sleep(seconds)


DULServiceProvider._run_loop_delay = property(_get_delay, _set_delay)
_association_module.time = _AssociationClock()
