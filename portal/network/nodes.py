"""Remote DICOM nodes kept by the site: who we send to, and where C-MOVE may deliver."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from portal import audit, clock
from portal.errors import Conflict, Invalid, NotFound
from portal.tables import Node, User

# What Lightbox calls itself when it opens an association (C-ECHO, C-STORE to a node, C-MOVE sub-operations).
LOCAL_AE_TITLE = "LIGHTBOX"
ECHO_TIMEOUT_S = 10

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_AE_TITLE = re.compile(r"^[ -~]{1,16}$")


def _check(name: str, ae_title: str, host: str, port, dicomweb_url: str) -> tuple[str, str, str, int, str]:
    name, ae_title, host, dicomweb_url = name.strip(), ae_title.strip().upper(), host.strip(), dicomweb_url.strip()
    if not _NAME.match(name):
        raise Invalid("A node name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
                      "invalid_node_name")
    if not _AE_TITLE.match(ae_title) or "\\" in ae_title:
        raise Invalid(f"'{ae_title}' is not an AE title (1-16 printable characters, no backslash).",
                      "invalid_ae_title")
    if not host or len(host) > 255 or any(c.isspace() for c in host):
        raise Invalid("Give the node's host name or IP address.", "invalid_host")
    try:
        port = int(port)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise Invalid("The port is a number from 1 to 65535.", "invalid_port")
    if dicomweb_url:
        parsed = urlparse(dicomweb_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise Invalid("The DICOMweb URL is an http(s) address such as http://pacs:8042/dicom-web.",
                          "invalid_url")
        dicomweb_url = dicomweb_url.rstrip("/")
    return name, ae_title, host, port, dicomweb_url


def as_dict(node: Node | dict) -> dict:
    n = node if isinstance(node, dict) else node.to_dict()
    return {"name": n["name"], "ae_title": n["ae_title"], "host": n["host"], "port": n["port"],
            "dicomweb_url": n["dicomweb_url"] or None, "description": n["description"],
            "created_at": clock.iso(n["created_at"])}


async def list_nodes() -> list[Node]:
    return await Node.objects().order_by(Node.name)


async def get(name: str) -> Node:
    node = await Node.objects().get(Node.name == name.strip())
    if node is None:
        raise NotFound(f"No DICOM node named '{name}' (see GET /api/v1/nodes).", "node_not_found")
    return node


async def by_ae_title(ae_title: str) -> Node | None:
    """The node a C-MOVE destination names (AE titles compare without padding, case-insensitively)."""
    return await Node.objects().get(Node.ae_title == ae_title.strip().upper())


async def create(name: str, *, ae_title: str, host: str, port, dicomweb_url: str = "", description: str = "",
                 by: User | None = None, client: str = "") -> Node:
    name, ae_title, host, port, dicomweb_url = _check(name, ae_title, host, port, dicomweb_url)
    if await Node.exists().where(Node.name == name):
        raise Conflict(f"A node named '{name}' exists already.", "node_exists")
    if await Node.exists().where(Node.ae_title == ae_title):
        # C-MOVE finds its destination by AE title: two nodes with one title would be ambiguous.
        raise Conflict(f"The AE title {ae_title} belongs to another node already.", "ae_title_taken")
    node = Node(name=name, ae_title=ae_title, host=host, port=port, dicomweb_url=dicomweb_url,
                description=description.strip(), created_at=clock.now())
    await node.save()
    await audit.record("node_created", user=by, object=f"node:{name}", client=client,
                       detail={"ae_title": ae_title, "host": host, "port": port, "dicomweb_url": dicomweb_url})
    return node


async def delete(name: str, *, by: User | None = None, client: str = "") -> None:
    node = await get(name)
    await Node.delete().where(Node.id == node.id)
    await audit.record("node_deleted", user=by, object=f"node:{node.name}", client=client)


@dataclass
class EchoResult:
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return {"ok": self.ok, "detail": self.detail}


def echo(node: Node) -> EchoResult:
    """C-ECHO the node (blocking: run it in a thread from async code)."""
    ae = AE(ae_title=LOCAL_AE_TITLE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ECHO_TIMEOUT_S
    ae.add_requested_context(Verification)
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    except Exception as exc:  # DNS failures and the like
        return EchoResult(False, f"Could not reach {node.host}:{node.port}: {exc}")
    if not assoc.is_established:
        if assoc.is_rejected:
            return EchoResult(False, f"{node.ae_title} at {node.host}:{node.port} rejected the association "
                                     "(does it know Lightbox's AE title LIGHTBOX?).")
        return EchoResult(False, f"No DICOM association with {node.host}:{node.port} (nothing listening, "
                                 "or the connection was refused or aborted).")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if status and status.get("Status") == 0x0000:
        return EchoResult(True, f"C-ECHO to {node.ae_title} at {node.host}:{node.port} succeeded.")
    code = status.get("Status") if status else None
    return EchoResult(False, f"C-ECHO answered status {code:#06x}." if code is not None else
                      "No C-ECHO response (timeout or abort).")
