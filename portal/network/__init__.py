"""DICOM networking: remote nodes, the query/retrieve SCP handlers, sending (C-STORE SCU, STOW-RS)."""

import select

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
