"""A small lifecycle manager: brings managed nodes up and down in order through their lifecycle services.

Like ``nav2_lifecycle_manager``: every node is configured in the given order, then every node activated; bring-down
goes in reverse order, deactivate (the active ones), then cleanup (the inactive ones), then shutdown (every node not
finalized). It talks to the nodes only over ``<node>/change_state`` and ``<node>/get_state`` (lifecycle_msgs), so
the nodes may live in this process or in others. ``spin(seconds)`` is how the manager's node is spun while it waits
for an answer: one ``spin_once`` of an executor that holds the manager's node (and, in one process, the managed
nodes, whose transitions then run inside that call).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node

from ros_mmfusion.core.errors import ConfigError

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "cleanup": Transition.TRANSITION_CLEANUP,
}
"""Transitions by name (shutdown is chosen per state: see :meth:`LifecycleManager.shutdown`)."""
SHUTDOWN_FROM = {
    "unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
    "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
    "active": Transition.TRANSITION_ACTIVE_SHUTDOWN,
}
"""The shutdown transition of each primary state."""


class TransitionFailed(ConfigError):
    """A node refused a transition (its own log line says why), or did not answer in time."""

    def __init__(self, node: str, transition: str, reason: str = "") -> None:
        super().__init__(f"node {node!r} failed to {transition}" + (f": {reason}" if reason else ""))
        self.node = node
        self.transition = transition


class LifecycleManager:
    """Drives the lifecycle of the nodes named in ``bring_up``/``bring_down`` from ``node`` (a plain node of its own).

    ``timeout``: seconds a node may take to answer a transition (configure loads models: generous);
    ``discovery_timeout``: seconds to wait for a node's lifecycle services to appear.
    """

    def __init__(self, node: Node, spin: Callable[[float], None], timeout: float = 300.0,
                 discovery_timeout: float = 15.0) -> None:
        self.node = node
        self.spin = spin
        self.timeout = timeout
        self.discovery_timeout = discovery_timeout
        self._clients: dict[tuple[str, str], object] = {}

    def _client(self, name: str, srv_type: type, service: str):
        key = (name, service)
        if key not in self._clients:
            target = name if name.startswith("/") else f"/{name}"
            self._clients[key] = self.node.create_client(srv_type, f"{target}/{service}")
        return self._clients[key]

    def _call(self, name: str, srv_type: type, service: str, request, timeout: float):
        """The response, or None when the service is not there or does not answer within ``timeout`` s."""
        client = self._client(name, srv_type, service)
        deadline = time.monotonic() + self.discovery_timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                return None
            self.spin(0.05)
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                client.remove_pending_request(future)
                return None
            self.spin(0.05)
        return future.result()

    def get_state(self, name: str) -> str | None:
        """The label of node ``name``'s current state (unconfigured, inactive, active, finalized), None without an
        answer."""
        response = self._call(name, GetState, "get_state", GetState.Request(), self.discovery_timeout)
        return None if response is None else response.current_state.label

    def change_state(self, name: str, transition: str, transition_id: int | None = None) -> bool:
        """Ask node ``name`` for ``transition``; True when it succeeded."""
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[transition] if transition_id is None else transition_id
        response = self._call(name, ChangeState, "change_state", request, self.timeout)
        ok = response is not None and response.success
        log = self.node.get_logger()
        if ok:
            log.info(f"{name}: {transition} done")
        else:
            log.error(f"{name}: {transition} failed" + ("" if response is not None else " (no answer)"))
        return ok

    def transition(self, name: str, transition: str, reason: Callable[[str], str] | None = None) -> None:
        """``change_state``, raising TransitionFailed (with ``reason(name)`` when given) when it does not succeed."""
        if not self.change_state(name, transition):
            raise TransitionFailed(name, transition, reason(name) if reason is not None else "")

    def bring_up(self, names: Iterable[str], reason: Callable[[str], str] | None = None) -> None:
        """Configure every node of ``names`` in order, then activate every one in order (Nav2's start-up).
        TransitionFailed at the first refusal; the caller brings the nodes down."""
        names = list(names)
        for transition in ("configure", "activate"):
            for name in names:
                self.transition(name, transition, reason)

    def shutdown(self, name: str) -> bool:
        """Shut node ``name`` down from whatever primary state it is in (True when it is finalized)."""
        state = self.get_state(name)
        if state == "finalized":
            return True
        if state not in SHUTDOWN_FROM:
            return False
        return self.change_state(name, "shutdown", SHUTDOWN_FROM[state])

    def bring_down(self, names: Iterable[str]) -> list[str]:
        """Reverse order of ``names``: deactivate the active nodes, clean up the inactive ones, shut every one down.
        Returns one line per node that did not get there (empty: all finalized)."""
        order = list(names)[::-1]
        for wanted, transition in (("active", "deactivate"), ("inactive", "cleanup")):
            for name in order:
                if self.get_state(name) == wanted:
                    self.change_state(name, transition)
        return [f"node {name!r} could not be shut down (state: {self.get_state(name) or 'no answer'})"
                for name in order if not self.shutdown(name)]
