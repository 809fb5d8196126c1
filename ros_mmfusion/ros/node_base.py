"""The base every ros_mmfusion node derives from.

A node declares its parameters as :class:`~ros_mmfusion.core.params.ParamSpec` (descriptors with type, range,
read-only flag; validated at start-up and on every change), subscribes to sensor inputs through
:meth:`MmfusionNode.sensor_subscription` (sensor-data QoS, arrival statistics, stamp checks, and a guard that turns a
malformed message or a failing frame into a throttled log line and a diagnostic instead of a dead node), publishes
outputs with :meth:`output_publisher` (reliable QoS), skips work when nobody listens (:meth:`has_subscribers`), and
reports ``~/debug/processing_time_ms``, ``~/debug/pipeline_latency_ms`` and ``/diagnostics``. Slow per-frame work
(a network) runs off the executor thread on a :meth:`~MmfusionNode.latest_frame_worker` (latest-frame semantics: a
new frame replaces a waiting one, counted as ``frames_dropped_by_policy``). A node that runs a
network says where its weights came from with :meth:`report_model` (start-up log line, ``model.*`` diagnostics keys,
and a WARN for as long as it runs on random or fixture weights).

Every node is a ROS 2 lifecycle node (``rclpy.lifecycle``). Its constructor only declares and validates the
parameters; :meth:`MmfusionNode.configure` (each node's hook) loads the model, creates publishers, subscriptions and
timers. With ``managed: false`` (the default) the node configures and activates itself at the end of construction and
offers no lifecycle services, as before; with ``managed: true`` it starts unconfigured and waits for
``~/change_state``: configure (a failure is one ERROR line, the node stays unconfigured), activate (outputs and input
callbacks on), deactivate (inputs ignored, no outputs), cleanup (everything configure made is destroyed and dropped,
models freed), shutdown from any state. See docs/architecture.md, "Managed (lifecycle) nodes".
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import LifecycleNode, LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from std_msgs.msg import Float64

from ros_mmfusion.core.codec.limits import LIMIT_PARAMS, MessageLimits
from ros_mmfusion.core.errors import ConfigError, MessageFormatError, TransformLookupError, one_line
from ros_mmfusion.core.evaluation.topics import EvaluationTopics
from ros_mmfusion.core.geometry import Transform
from ros_mmfusion.core.health import (
    ClockWatch,
    HealthReport,
    InputMonitor,
    LatencyMonitor,
    Level,
    StampGuard,
    summarize,
)
from ros_mmfusion.core.model_package import WeightsOrigin, model_values
from ros_mmfusion.core.params import ParamSpec, validate
from ros_mmfusion.core.stamps import stamp_to_ns
from ros_mmfusion.core.tf_buffer import DEFAULT_CACHE_TIME_S, DEFAULT_TOLERANCE_S, TfBuffer
from ros_mmfusion.core.worker import LatestFrameWorker
from ros_mmfusion.ros.image import transport_topic, transport_type
from ros_mmfusion.ros.qos import OUTPUT_QOS, SENSOR_QOS

__all__ = ["COMMON_PARAMS", "MmfusionNode", "stamp_to_ns"]

_ENTITY_KINDS = ("publishers", "subscriptions", "timers", "clients", "services")
WORKER_IDLE_TIMEOUT_S = 10.0
"""Seconds deactivation waits for a worker's running frame to finish (its outputs go out while the publishers still
publish), and cleanup/shutdown for a worker thread to end."""
"""What :meth:`MmfusionNode.configure` may create, destroyed again on cleanup."""

_PARAM_TYPES = {
    (bool, False): ParameterType.PARAMETER_BOOL, (int, False): ParameterType.PARAMETER_INTEGER,
    (float, False): ParameterType.PARAMETER_DOUBLE, (str, False): ParameterType.PARAMETER_STRING,
    (bool, True): ParameterType.PARAMETER_BOOL_ARRAY, (int, True): ParameterType.PARAMETER_INTEGER_ARRAY,
    (float, True): ParameterType.PARAMETER_DOUBLE_ARRAY, (str, True): ParameterType.PARAMETER_STRING_ARRAY,
}

#: Parameters every node has.
COMMON_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics reports.", minimum=0.1, maximum=60.0,
              read_only=True),
    ParamSpec("latency_warn_ms", 200.0, "Pipeline latency p95 (input stamp to output) above which diagnostics WARN.",
              minimum=0.0),
    ParamSpec("latency_error_ms", 1000.0, "Pipeline latency p95 above which diagnostics report ERROR.", minimum=0.0),
    ParamSpec("input_timeout", 1.0, "Seconds without a message after which an input counts as stalled.",
              minimum=0.01),
    ParamSpec("max_input_age", 0.0, "Skip inputs whose header stamp is older than this many seconds "
              "(0 disables; use with live sensors, not with sim time jumps).", minimum=0.0),
    ParamSpec("log_throttle", 5.0, "Seconds between repeated log lines about the same input problem.", minimum=0.0),
    *LIMIT_PARAMS,  # max_image_side, max_image_pixels, max_points, ...: what one message may cost (core/codec/limits)
    ParamSpec("managed", False, "Run as a managed (lifecycle) node: start unconfigured and wait for ~/change_state "
              "(configure, activate, ...); false: configure and activate at start-up.", read_only=True),
)


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(
        name=spec.name, type=_PARAM_TYPES[(spec.kind, spec.is_list)], description=spec.description,
        read_only=spec.read_only, additional_constraints=spec.constraints_text(),
    )
    if not spec.is_list and spec.kind is float and (spec.minimum is not None or spec.maximum is not None):
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(spec.minimum if spec.minimum is not None else -1e300),
            to_value=float(spec.maximum if spec.maximum is not None else 1e300), step=0.0)]
    elif not spec.is_list and spec.kind is int and (spec.minimum is not None or spec.maximum is not None):
        desc.integer_range = [IntegerRange(
            from_value=int(spec.minimum if spec.minimum is not None else -(2**62)),
            to_value=int(spec.maximum if spec.maximum is not None else 2**62), step=1)]
    return desc


class MmfusionNode(LifecycleNode):
    """Node base: validated parameters, guarded sensor inputs, timing topics, diagnostics and the lifecycle.

    Subclasses set ``PARAMS`` (a tuple of ParamSpec), ``EVALUATION`` when evaluated, call
    ``super().__init__(name, **kwargs)`` and do the rest of their set-up in :meth:`configure`; validated values are
    in ``self.params`` (a dict kept up to date on parameter changes). A bad start-up value raises ConfigError with the
    parameter's name and the reason; so does a failing :meth:`configure` of an unmanaged node.
    """

    PARAMS: tuple[ParamSpec, ...] = ()
    EVALUATION: EvaluationTopics | None = None
    """The topics ``mmfusion eval`` and ``mmfusion benchmark`` evaluate (None: only the debug latency is shown)."""

    @classmethod
    def declared_params(cls) -> tuple[ParamSpec, ...]:
        """Every parameter the node declares: ``COMMON_PARAMS`` (message limits, lifecycle, ...) then its ``PARAMS``."""
        return (*COMMON_PARAMS, *cls.PARAMS)

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        Node.__init__(self, node_name, **kwargs)  # the lifecycle state machine follows, once `managed` is known
        self._specs = {s.name: s for s in self.declared_params()}
        self.params: dict[str, Any] = {}
        self._limits: MessageLimits | None = None
        for spec in self._specs.values():
            try:
                self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except InvalidParameterTypeException as exc:
                raise ConfigError(f"{self.get_name()}: invalid parameter {spec.name!r}: must be "
                                  f"{spec.kind.__name__}{' list' if spec.is_list else ''} "
                                  f"({spec.constraints_text() or spec.description}); {exc}") from None
            except InvalidParameterValueException as exc:
                reason = str(exc).split("Reason: ", 1)[-1]
                raise ConfigError(f"{self.get_name()}: invalid parameter {spec.name!r}: {reason} "
                                  f"(allowed: {spec.constraints_text()})") from None
        for spec in self._specs.values():
            value = self.get_parameter(spec.name).value
            try:
                self.params[spec.name] = validate(spec, value)
            except ConfigError as exc:
                self.get_logger().fatal(f"invalid parameter: {exc}")
                raise ConfigError(f"{self.get_name()}: {exc}") from None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.inputs: dict[str, InputMonitor] = {}
        self.input_topics: dict[str, str] = {}  # input name -> resolved topic (after remapping)
        self._default_timeout_inputs: set[str] = set()  # follow `input_timeout` changes
        self._stamp_guards: dict[str, StampGuard] = {}
        self._last_log: dict[str, float] = {}
        self.latency = LatencyMonitor(self.params["latency_warn_ms"], self.params["latency_error_ms"])
        self._debug_processing = self.create_publisher(Float64, "~/debug/processing_time_ms", OUTPUT_QOS)
        self._debug_pipeline = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", OUTPUT_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._extra_findings: dict[str, tuple[Level, str]] = {}
        self.model_values: dict[str, str] = {}  # model.* keys of report_model, in every diagnostics status
        self.frames_processed = 0
        self.frames_skipped = 0
        self.time_jumps = 0
        self._workers: list[LatestFrameWorker] = []  # latest_frame_worker(): stopped on close, cleanup, destroy
        self._retired_policy_drops = 0  # frames_dropped_by_policy of workers already stopped
        self.tf: TfBuffer | None = None  # enable_tf()
        self._tf_listener = None
        self._clock_watch = ClockWatch()
        # On the steady clock: health is reported on wall time even when the node clock is a /clock that stopped.
        self.create_timer(self.params["diagnostics_period"], self.publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.managed: bool = self.params["managed"]
        self.active = False  # input callbacks and work timers run, lifecycle publishers publish
        self.configure_error: str | None = None  # why the last configure failed (one line)
        self._configure_exception: Exception | None = None
        self._owned: dict[str, Any] | None = None  # what configure made (set while configured)
        self._released = False
        self._param_callbacks: list[tuple[Callable, Callable]] | None = None  # (remove, callback) while configuring
        LifecycleNodeMixin.__init__(self, enable_communication_interface=self.managed)
        if not self.managed:  # configure and activate now; a failing configure raises as a constructor did
            self.trigger_configure()
            if self._configure_exception is not None:
                exc, self._configure_exception = self._configure_exception, None
                self.destroy_node()  # now, not at some garbage collection: a node of the same name may follow
                raise exc
            self.trigger_activate()

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def configure(self) -> None:
        """The node's set-up beyond its parameters: check path parameters, load the model, create publishers
        (:meth:`output_publisher`), subscriptions and timers (:meth:`work_timer`). Raise ConfigError (one line naming
        the parameter) when it cannot be done. Called on the configure transition (at start-up for an unmanaged node);
        on cleanup everything it created is destroyed and every attribute it set is dropped."""

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        owned = {"attributes": set(vars(self)), **{kind: set(getattr(self, kind)) for kind in _ENTITY_KINDS}}
        self._param_callbacks = []
        self._configure_exception = None
        try:
            self.configure()
        except Exception as exc:  # noqa: BLE001 - a node that cannot configure stays unconfigured, alive
            self._owned, self._released = owned | {"callbacks": self._param_callbacks}, True  # nothing to close
            self._param_callbacks = None
            self._release()
            self._configure_exception = exc
            self.configure_error = one_line(exc if isinstance(exc, (ConfigError, OSError))
                                            else f"{type(exc).__name__}: {exc}")
            if self.managed:
                self.get_logger().error(f"configure failed: {self.configure_error}")
            return TransitionCallbackReturn.FAILURE
        owned["callbacks"], self._param_callbacks = self._param_callbacks, None
        self._owned, self._released = owned, False
        self.configure_error = None
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = True
        return super().on_activate(state)  # the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        for worker in self._workers:  # the waiting frame goes (counted); the running one finishes and publishes
            worker.discard()
            worker.wait_idle(WORKER_IDLE_TIMEOUT_S)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.active:
            self.on_deactivate(state)
        if self._owned is not None:
            self._release()
        return super().on_shutdown(state)

    def _release(self) -> None:
        """Undo configure (or what a failed one made): :meth:`close`, destroy the publishers, subscriptions, timers,
        clients, services and parameter callbacks it created, drop the attributes it set (models are freed) and the
        inputs, findings and transform buffer it registered."""
        if self._owned is None:
            return
        self.close()
        owned, self._owned = self._owned, None
        for remove, callback in owned.get("callbacks", []):
            remove(callback)
        for kind in _ENTITY_KINDS:
            for entity in set(getattr(self, kind)) - owned[kind]:
                if kind == "publishers" and entity in self._managed_entities:
                    self.destroy_lifecycle_publisher(entity)
                else:
                    getattr(self, f"destroy_{kind[:-1]}")(entity)
        for name in set(vars(self)) - owned["attributes"]:
            if not name.startswith(("_Node__", "_LifecycleNodeMixin__")):  # rclpy's own
                delattr(self, name)
        self.inputs.clear()
        self.input_topics.clear()
        self._default_timeout_inputs.clear()
        self._stamp_guards.clear()
        self._extra_findings.clear()
        self.model_values = {}
        self.tf = self._tf_listener = None

    def add_on_set_parameters_callback(self, callback: Callable) -> None:
        super().add_on_set_parameters_callback(callback)
        if self._configuring():
            self._param_callbacks.append((self.remove_on_set_parameters_callback, callback))

    def add_post_set_parameters_callback(self, callback: Callable) -> None:
        super().add_post_set_parameters_callback(callback)
        if self._configuring():
            self._param_callbacks.append((self.remove_post_set_parameters_callback, callback))

    def _configuring(self) -> bool:
        return getattr(self, "_param_callbacks", None) is not None

    def destroy_node(self) -> None:
        """Destroy the node and its lifecycle state machine (which rclpy's LifecycleNode leaves to the garbage
        collector, and which keeps the node's handle, its /rosout logger among it, alive until then); worker threads
        are stopped first (a node destroyed without :meth:`close`)."""
        self._stop_workers()
        super().destroy_node()
        state_machine = getattr(self, "_state_machine", None)
        if state_machine is not None:
            state_machine.destroy_when_not_in_use()

    @property
    def lifecycle_state(self) -> str:
        """The lifecycle state's label: unconfigured, inactive, active, finalized (or a transition's)."""
        return self._state_machine.current_state[1]

    def network_probe(self) -> Callable[[], object] | None:
        """One call of this node's network alone on the last input it ran, for ``mmfusion bench-graph`` to time the
        network by itself in the same run as the graph (issue 17's "p50 <= 1.25x the network's own latency"). None:
        the node has no network probe, or has run no frame yet. Call it only while the node is idle."""
        return None

    def latest_frame_worker(self, name: str, job: Callable[[Any], None], max_waiting: int = 1) -> LatestFrameWorker:
        """A worker thread that runs ``job(frame)`` off the executor thread, for the latest frame only: hand it
        frames with ``.submit(frame)`` from an input callback, which never waits for the job. A frame submitted
        while ``max_waiting`` others wait replaces the oldest; the replaced one is counted in ``/diagnostics`` as
        ``frames_dropped_by_policy`` (not as a fault). Jobs run one at a time in submission order, only while the
        node is active (a frame that reaches the thread while inactive is counted as dropped by policy), under the
        same guard as input callbacks (:meth:`run_guarded` with input ``name``: a failing frame is a throttled log
        line, a diagnostic and a skipped frame). The job publishes its outputs itself, with the input's header.
        Deactivation drops the waiting frame and waits for the running one; cleanup, shutdown, :meth:`close` and
        :meth:`destroy_node` stop and join the thread before the node's models are released. Create it in
        :meth:`configure`.

        Publishing from this thread is safe: rcl publishers are thread-safe, the lifecycle publishers only check
        their enabled flag, and the thread is joined before any publisher is destroyed."""
        def run(frame: Any) -> None:
            if not self.active:  # counted like a replaced frame: dropped by policy, not a fault
                worker.count_dropped()
                return
            self.run_guarded(name, job, frame)

        def failed(frame: Any, exc: BaseException) -> None:  # run_guarded itself failed (e.g. logging): still counted
            self.frames_skipped += 1

        worker = LatestFrameWorker(run, name=f"{self.get_name()}.{name}", on_error=failed, max_waiting=max_waiting)
        self._workers.append(worker)
        return worker

    @property
    def frames_dropped_by_policy(self) -> int:
        """Frames the latest-frame workers dropped because a newer frame replaced them (or the node was inactive or
        stopping), since start-up."""
        return self._retired_policy_drops + sum(worker.dropped for worker in self._workers)

    def _stop_workers(self) -> None:
        """Stop and join every latest-frame worker (the waiting frame is dropped, the running one finishes)."""
        workers, self._workers = getattr(self, "_workers", []), []
        for worker in workers:
            if not worker.stop(WORKER_IDLE_TIMEOUT_S):
                self.get_logger().warn(f"worker {worker.name} still running after {WORKER_IDLE_TIMEOUT_S:g} s; "
                                       "left behind (daemon thread)")
            self._retired_policy_drops += worker.dropped

    def work_timer(self, period_s: float, callback: Callable[[], None]):
        """A timer whose ``callback`` runs only while the node is active (periods in seconds of the node clock)."""
        return self.create_timer(period_s, lambda: callback() if self.active else None)

    # -- parameters -------------------------------------------------------------------------------------------------
    def _on_set_parameters(self, changes: Sequence[rclpy.parameter.Parameter]) -> SetParametersResult:
        staged = {}
        configured = self._owned is not None  # unconfigured: configure reads the values; nothing to re-derive
        for p in changes:
            spec = self._specs.get(p.name)
            if spec is None:
                continue
            try:
                staged[p.name] = validate(spec, p.value)
            except ConfigError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        previous = {name: self.params[name] for name in staged}
        self.params.update(staged)
        self._limits = None  # rebuilt from the new values on next use
        try:
            if configured:
                self.on_parameters_changed(frozenset(staged))
        except ConfigError as exc:
            self.params.update(previous)
            self._limits = None
            return SetParametersResult(successful=False, reason=str(exc))
        self.latency.warn_ms = self.params["latency_warn_ms"]
        self.latency.error_ms = self.params["latency_error_ms"]
        for name in self._default_timeout_inputs:
            self.inputs[name].stall_timeout = self.params["input_timeout"]
        return SetParametersResult(successful=True)

    def on_parameters_changed(self, names: frozenset[str]) -> None:
        """Apply a run-time change of the writable parameters ``names`` (validated, already in ``self.params``).

        Parameters read where they are used (thresholds, limits, colours) need nothing here; a node that derives
        state from a writable parameter at start-up re-derives it here, so that a set parameter takes effect.
        Raise ConfigError to refuse the change (for example a value that has no effect in this configuration): the
        previous values are restored and the reason goes back to the caller. Read-only parameters never get here
        (rclpy refuses to set them).
        """

    def param_or_package(self, name: str, package_value: Any) -> Any:
        """Parameter ``name``'s value, or ``package_value`` (a tuning value the node's model package carries, None
        when it has none) while the parameter keeps its declared default: a value set in a params file, with
        ``--set`` or at run time other than the default overrides the package."""
        value = self.params[name]
        default = self._specs[name].default
        at_default = list(value) == list(default) if self._specs[name].is_list else value == default
        return package_value if package_value is not None and at_default else value

    @property
    def limits(self) -> MessageLimits:
        """The message limits of this node's parameters: pass them to every decode call (``limits=self.limits``).
        Built once per parameter change, not per message."""
        if self._limits is None:
            self._limits = MessageLimits.from_params(self.params)
        return self._limits

    # -- time -------------------------------------------------------------------------------------------------------
    def now_ns(self) -> int:
        """The node clock in nanoseconds (wall time, or /clock with use_sim_time)."""
        return self.get_clock().now().nanoseconds

    # -- transforms -------------------------------------------------------------------------------------------------
    def enable_tf(self) -> TfBuffer:
        """The node's transform buffer, fed from ``/tf`` and ``/tf_static`` from now on (created and subscribed on the
        first call; nodes that never call it subscribe to neither). Its cache time and tolerance are the node's
        ``tf_cache_time`` and ``tf_tolerance`` parameters where it declares them (``core.tf_buffer.TF_PARAMS``)."""
        if self.tf is None:
            from ros_mmfusion.ros.tf import TfListener

            self.tf = TfBuffer(self.params.get("tf_cache_time", DEFAULT_CACHE_TIME_S),
                               self.params.get("tf_tolerance", DEFAULT_TOLERANCE_S))
            self._tf_listener = TfListener(self, self.tf, lambda key, text: self.log_throttled(key, "warn", text))
        return self.tf

    def lookup_transform(self, target: str, source: str, stamp_ns: int, what: str,
                         input_name: str | None = None) -> Transform | None:
        """``T_target_source`` (maps ``source`` points into ``target``) at ``stamp_ns`` from the node's TF buffer
        (enabled on first use), or None when it cannot be given (unknown frame, no path, stale: beyond the buffered
        history by more than ``tf_tolerance``): then a throttled log line, a WARN finding ``tf:<what>`` in
        ``/diagnostics`` until a lookup of ``what`` succeeds again, and the frame counted as skipped (and dropped on
        input ``input_name``); the caller skips the frame."""
        buffer = self.enable_tf()
        buffer.tolerance = self.params.get("tf_tolerance", buffer.tolerance)
        try:
            transform = buffer.lookup(target, source, stamp_ns)
        except TransformLookupError as exc:
            self.frames_skipped += 1
            if input_name in self.inputs:
                self.inputs[input_name].on_dropped(f"{what}: {exc}")
            self.set_finding(f"tf:{what}", Level.WARN, f"{what}: {exc}; frames skipped")
            self.log_throttled(f"tf:{what}", "warn", f"{what}: skipping the frame: {exc}")
            return None
        self.clear_finding(f"tf:{what}")
        return transform

    # -- logging ----------------------------------------------------------------------------------------------------
    def log_throttled(self, key: str, level: str, text: str) -> None:
        """Log ``text`` at most once per ``log_throttle`` seconds per ``key`` (wall clock, so replay cannot flood)."""
        now = time.monotonic()
        if now - self._last_log.get(key, -1e9) < self.params["log_throttle"]:
            return
        self._last_log[key] = now
        # One call site per severity: rclpy keys its logging state by call site and raises ValueError when one site
        # logs with two severities ("Logger severity cannot be changed between calls").
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warn":
            logger.warn(text)
        elif level == "info":
            logger.info(text)
        else:
            getattr(logger, level)(text)

    def set_finding(self, key: str, level: Level, text: str) -> None:
        """A node-specific health finding (e.g. "running without depth") reported until cleared."""
        self._extra_findings[key] = (level, text)

    def clear_finding(self, key: str) -> None:
        self._extra_findings.pop(key, None)

    def report_model(self, what: str, origin: WeightsOrigin, backend: str, device: str = "cpu") -> None:
        """Say once at start-up where the network ``what`` gets its weights (``origin``) and what runs it: INFO with
        the package or file and the hash for trained weights; for random or fixture weights a WARN line and a WARN
        finding in ``/diagnostics`` for as long as the node runs. Every status then carries the ``model.*`` values
        (``core.model_package.model_values``) that ``mmfusion eval`` and ``bench-graph`` copy into their reports."""
        self.model_values = model_values(origin, backend, device)
        if origin.trained:
            self.get_logger().info(origin.log_line(what))
            self.clear_finding("weights")
        else:
            self.get_logger().warn(origin.log_line(what))
            self.set_finding("weights", Level.WARN, f"{origin.kind} weights, not trained: outputs mean nothing "
                                                    "(set model_package)")

    # -- inputs -----------------------------------------------------------------------------------------------------
    def sensor_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None], *,
                            name: str | None = None, required: bool = True, stall_timeout: float | None = None,
                            min_rate: float = 0.0, qos=SENSOR_QOS, check_stamp: bool = True):
        """Subscribe to a sensor input with the sensor-data QoS and the node's guards.

        The callback runs only for messages whose stamp passes the stale/out-of-order checks; a
        MessageFormatError (or any other exception) raised inside it is logged throttled, counted as a malformed
        message or failed frame in diagnostics, and the frame is skipped: the node keeps running.
        """
        name = name or topic
        monitor = InputMonitor(name, stall_timeout=stall_timeout or self.params["input_timeout"],
                               min_rate=min_rate, required=required)
        self.inputs[name] = monitor
        if stall_timeout is None:
            self._default_timeout_inputs.add(name)
        guard = StampGuard(self.params["max_input_age"])
        self._stamp_guards[name] = guard

        def guarded(msg: Any) -> None:
            if not self.active:  # an inactive managed node ignores its inputs
                return
            now_ns = self.now_ns()
            monitor.on_message(now_ns / 1e9)
            header = getattr(msg, "header", None)
            if check_stamp and header is not None:
                guard.max_age_ns = int(self.params["max_input_age"] * 1e9)
                problem = guard.check(stamp_to_ns(header.stamp), now_ns)
                if guard.jumped:
                    self._time_jumped(name, guard)
                if problem is not None:
                    monitor.on_dropped(problem)
                    self.frames_skipped += 1
                    self.log_throttled(f"stamp:{name}", "warn", f"{name}: skipping message: {problem}")
                    return
            self.run_guarded(name, callback, msg)

        subscription = self.create_subscription(msg_type, topic, guarded, qos)
        self.input_topics[name] = subscription.topic_name
        return subscription

    def image_subscription(self, topic: str, transport: str, callback: Callable[[Any], None], **kwargs: Any):
        """Subscribe to the image input ``topic`` over ``transport`` (``raw``: sensor_msgs/Image on ``topic``;
        ``compressed``: sensor_msgs/CompressedImage on ``<topic>/compressed``, ``topic`` resolved through the
        node's remappings first, as image_transport does). ``callback`` gets the message as it came: decode it with
        ``ros.image.rgb_from_msg`` / ``plane_from_msg``, which take either type. Other arguments as
        :meth:`sensor_subscription`."""
        if transport != "raw":
            topic = transport_topic(self.resolve_topic_name(topic), transport)
        return self.sensor_subscription(transport_type(transport), topic, callback, **kwargs)

    def run_guarded(self, name: str, fn: Callable[..., None], *args: Any) -> bool:
        """Call ``fn(*args)``; on failure log throttled, count it against input ``name`` and return False."""
        try:
            fn(*args)
            return True
        except MessageFormatError as exc:
            self.inputs[name].on_malformed(str(exc)) if name in self.inputs else None
            self.frames_skipped += 1
            self.log_throttled(f"malformed:{name}", "warn", f"{name}: skipping malformed message: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bad frame must never kill the node
            if name in self.inputs:
                self.inputs[name].on_dropped(f"{type(exc).__name__}: {exc}")
            self.frames_skipped += 1
            self.log_throttled(f"error:{name}", "error", f"{name}: frame failed and was skipped: "
                               f"{type(exc).__name__}: {exc}")
        return False

    def camera_info_subscription(self, topic: str, *, required: bool = True, stall_timeout: float = 5.0,
                                 then: Callable[[], None] | None = None):
        """Keep the latest CameraInfo of ``topic`` as ``self.camera`` (a PinholeCamera; None until one arrived) and
        its frame as ``self.camera_frame_id``: calibration is static per camera, so nodes use the latest one.
        ``then()`` runs after each one is taken (e.g. a frame that waited for the first calibration)."""
        from sensor_msgs.msg import CameraInfo

        from ros_mmfusion.ros.camera_info import camera_info_to_intrinsics

        self.camera = None
        self.camera_frame_id = ""

        def on_camera_info(msg: CameraInfo) -> None:
            self.camera = camera_info_to_intrinsics(msg, limits=self.limits).pinhole()
            self.camera_frame_id = msg.header.frame_id
            if then is not None:
                then()

        return self.sensor_subscription(CameraInfo, topic, on_camera_info, name="camera_info", required=required,
                                        stall_timeout=stall_timeout)

    def _time_jumped(self, name: str, guard: StampGuard) -> None:
        """Input ``name`` started a new timeline: every other input starts one too (its next stamp is accepted
        whatever it is, so one jump resets the node once, not once per input), arrival-rate windows restart, and the
        subclass resets its time-dependent state (:meth:`on_time_jump`)."""
        self.time_jumps += 1
        if self.tf is not None:
            self.tf.clear()  # the /tf history belongs to the old timeline (the static tree stays)
        for other in self._stamp_guards.values():
            if other is not guard:
                other.forget()
        self.log_throttled(f"time_jump:{name}", "info",
                           f"{name}: time jumped back (a looping bag or a restarted clock); resetting state "
                           f"({self.time_jumps} jump(s) so far)")
        self.on_time_jump()

    def on_time_jump(self) -> None:
        """Called when an input's stamps jump back (a looping bag); subclasses reset synchronizers/contexts."""

    # -- outputs ----------------------------------------------------------------------------------------------------
    def output_publisher(self, msg_type: type, topic: str, qos=OUTPUT_QOS):
        """A lifecycle publisher of an output: it publishes only while the node is active."""
        publisher = self.create_lifecycle_publisher(msg_type, topic, qos)
        if self.active:  # made after activation (a node that builds outside configure)
            publisher.on_activate(None)
        return publisher

    @staticmethod
    def has_subscribers(publishers: Iterable[Any]) -> bool:
        """True when any of ``publishers`` has a subscriber: nodes skip inference when nobody listens."""
        return any(p.get_subscription_count() > 0 for p in publishers)

    def report_timing(self, input_stamp_ns: int, started_monotonic: float) -> tuple[float, float]:
        """Publish processing time (since ``started_monotonic``) and pipeline latency (node clock minus input stamp)."""
        processing_ms = (time.perf_counter() - started_monotonic) * 1e3
        pipeline_ms = (self.now_ns() - input_stamp_ns) / 1e6
        self.latency.record(processing_ms, pipeline_ms)
        self.frames_processed += 1
        self._debug_processing.publish(Float64(data=processing_ms))
        self._debug_pipeline.publish(Float64(data=pipeline_ms))
        return processing_ms, pipeline_ms

    # -- diagnostics ------------------------------------------------------------------------------------------------
    def health(self):
        """Inputs judged on the node clock (simulated time with ``use_sim_time``), plus, on sim time, whether the
        clock still advances (:class:`~ros_mmfusion.core.health.ClockWatch`, over ``input_timeout`` wall seconds)."""
        if not self.active:  # a managed node not active: its inputs are ignored, so their silence is no fault
            return HealthReport(Level.OK, f"{self.lifecycle_state}: not processing", {})
        now = self.now_ns() / 1e9
        findings = list(self._extra_findings.values())
        if self.get_clock().ros_time_is_active:
            self._clock_watch.timeout = self.params["input_timeout"]
            findings.append(self._clock_watch.evaluate(now, time.monotonic()))
        return summarize(list(self.inputs.values()), self.latency, now, findings)

    def diagnostic_values(self, report: HealthReport) -> dict[str, str]:
        """The key/values of this node's ``/diagnostics`` status for ``report`` (also the run summary's)."""
        return {**report.values, "frames_processed": str(self.frames_processed),
                "frames_skipped": str(self.frames_skipped),
                "frames_dropped_by_policy": str(self.frames_dropped_by_policy), "time_jumps": str(self.time_jumps),
                **self.model_values}

    def publish_diagnostics(self) -> None:
        report = self.health()
        status = DiagnosticStatus(
            level=bytes([int(report.level)]), name=f"{self.get_fully_qualified_name()}", message=report.message,
            hardware_id="ros_mmfusion",
            values=[KeyValue(key=k, value=v) for k, v in self.diagnostic_values(report).items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(msg)

    def release(self) -> None:
        """Free what :meth:`configure` acquired beyond Python objects (threads, open files): called once, by
        :meth:`close` (the runner, before destroying the node) or by the cleanup transition."""

    def close(self) -> None:
        """Release resources before destruction: stop and join the latest-frame workers, then :meth:`release` once,
        if the node is configured."""
        self._stop_workers()
        if self._owned is not None and not self._released:
            self._released = True
            self.release()
