"""The super-admin's queue health page: queue lengths, workers and failed jobs (with requeue)
from Redis, and from the database what waits for them — the outbox backlog and paid orders not
yet delivered — so an outage is visible even while Redis itself is down.

Registered by create_app() (kameng/__init__.py, _register_blueprints) under /queues on the
admin host. Reading the page changes nothing in Redis (registries are counted without RQ's
cleanup, which the workers run themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import func, select

from ..audit.service import record
from ..extensions import db
from ..forms import EmptyForm
from ..orders.models import Order
from ..superadmin.console import platform_actor, platform_blueprint
from ..tenants.scoping import platform_scope
from .models import Outbox
from .queues import QUEUES, connection, redis_url

bp = platform_blueprint("queue_health", __name__)

FAILED_SHOWN = 100  # failed jobs listed per queue (newest first); the rest are counted
UNDELIVERED = ("paid", "delivering")


@dataclass
class QueueCounts:
    name: str
    queued: int
    started: int
    scheduled: int  # delayed jobs and retries waiting for their interval
    failed: int


@dataclass
class WorkerRow:
    name: str
    state: str
    queues: list[str]
    current_job: str | None
    last_heartbeat: datetime | None


@dataclass
class Backlog:
    """Rows of one kind waiting in the database: how many, and since when."""

    label: str
    count: int
    oldest: datetime | None


@dataclass
class FailedJob:
    id: str
    queue: str
    function: str
    args: str
    error: str  # the exception's last line
    ended_at: datetime | None


class RedisUnavailable(Exception):
    """Redis is not configured or does not answer; the message says which, fit to show."""


# -- reading Redis ---------------------------------------------------------------------------


def redis_address() -> str:
    """Where Redis is expected, without any password (for the page)."""
    url = redis_url() or ""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or ''}"


def _redis() -> Redis:
    if not redis_url():
        raise RedisUnavailable("No REDIS_URL is configured, so there are no queues to show "
                               "(deliveries run inline in the web process).")
    conn = connection()
    try:
        conn.ping()
    except RedisError as error:
        raise RedisUnavailable(f"Redis at {redis_address()} does not answer ({error}). Paid "
                               "orders are still recorded; the outbox and the reconciler hand "
                               "them to the workers once Redis is back.") from None
    return conn


def _problem(error: Exception) -> str:
    if isinstance(error, RedisUnavailable):
        return str(error)
    return f"Redis at {redis_address()} stopped answering ({error})."  # went away mid-way


def queue_counts(conn: Redis) -> list[QueueCounts]:
    rows = []
    for name in QUEUES:
        queue = Queue(name, connection=conn)
        rows.append(QueueCounts(
            name=name,
            queued=queue.count,
            started=StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            scheduled=ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False),
            failed=FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
        ))
    return rows


def worker_rows(conn: Redis) -> list[WorkerRow]:
    rows = []
    for worker in SimpleWorker.all(connection=conn):
        job_id = worker.get_current_job_id()
        job = worker.get_current_job() if job_id else None
        rows.append(WorkerRow(
            name=worker.name,
            state=worker.get_state(),
            queues=worker.queue_names(),
            current_job=(f"{job.func_name} {_call_args(job)}" if job is not None else job_id),
            last_heartbeat=_aware(worker.last_heartbeat),
        ))
    return sorted(rows, key=lambda row: row.name)


def _call_args(job: Job) -> str:
    try:
        return ", ".join(repr(arg) for arg in job.args)
    except Exception:  # a job whose data cannot be read is still listed
        return "(unreadable)"


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def failed_jobs(conn: Redis, limit: int = FAILED_SHOWN) -> tuple[list[FailedJob], int]:
    """The newest failed jobs of every queue, and how many there are in all."""
    shown, total = [], 0
    for name in QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=conn))
        total += registry.get_job_count(cleanup=False)
        ids = registry.get_job_ids(0, limit - 1, desc=True, cleanup=False)
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=conn), strict=True):
            if job is None:  # its data expired; the id goes at RQ's next cleanup
                continue
            result = job.latest_result()
            shown.append(FailedJob(
                id=job_id, queue=name, function=job.func_name or "?", args=_call_args(job),
                error=_last_line(result.exc_string if result is not None else ""),
                ended_at=_aware(job.ended_at)))
    shown.sort(key=lambda job: job.ended_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return shown, total


def requeue_failed(conn: Redis, job_id: str) -> bool:
    """Put a failed job of one of our queues back on its queue; False when it is not failed."""
    for name in QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=conn))
        if job_id in registry:
            try:
                registry.requeue(job_id)
            except (InvalidJobOperation, NoSuchJobError):
                return False
            return True
    return False


# -- reading the database --------------------------------------------------------------------


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite and RQ hand back naive UTC times."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def outbox_backlog() -> list[Backlog]:
    """Outbox rows not yet handed to a queue, by topic."""
    with platform_scope():
        rows = db.session.execute(
            select(Outbox.topic, func.count(), func.min(Outbox.created_at))
            .where(Outbox.processed_at.is_(None)).group_by(Outbox.topic).order_by(Outbox.topic)
        ).all()
    return [Backlog(topic, count, _aware(oldest)) for topic, count, oldest in rows]


def undelivered_orders() -> list[Backlog]:
    """Paid orders that are not delivered yet (paid, or stopped half-way in delivering)."""
    with platform_scope():
        rows = {status: (count, oldest) for status, count, oldest in db.session.execute(
            select(Order.status, func.count(), func.min(Order.paid_at))
            .where(Order.status.in_(UNDELIVERED)).group_by(Order.status)
        ).all()}
    return [Backlog(status, *(rows.get(status) or (0, None))) for status in UNDELIVERED]


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest unit that fits ("3 min", "2 h 5 min")."""
    if moment is None:
        return "—"
    seconds = max(0, int(((now or datetime.now(UTC)) - _aware(moment)).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


# -- pages -----------------------------------------------------------------------------------


@bp.context_processor
def _helpers():
    return {"age": age, "action": EmptyForm()}


def _confirm_button() -> None:
    """A plain POST button: CSRFProtect has checked the token; this keeps the habit explicit."""
    if not EmptyForm().validate_on_submit():
        abort(400)


@bp.get("/")
def overview():
    context = {"outbox": outbox_backlog(), "undelivered": undelivered_orders(),
               "queues": [], "workers": [], "problem": None}
    db.session.rollback()  # read-only: end the transaction before talking to Redis
    try:
        conn = _redis()
        context.update(queues=queue_counts(conn), workers=worker_rows(conn))
    except (RedisUnavailable, RedisError) as error:
        context["problem"] = _problem(error)
    return render_template("queues/overview.html", **context), 503 if context["problem"] else 200


@bp.get("/failed")
def failed():
    try:
        jobs, total = failed_jobs(_redis())
    except (RedisUnavailable, RedisError) as error:
        return render_template("queues/failed.html", jobs=[], total=0,
                               problem=_problem(error)), 503
    return render_template("queues/failed.html", jobs=jobs, total=total, problem=None)


@bp.post("/failed/<job_id>/requeue")
def requeue(job_id: str):
    _confirm_button()
    try:
        requeued = requeue_failed(_redis(), job_id)
    except (RedisUnavailable, RedisError) as error:
        flash(_("Nothing was requeued. %(error)s", error=_problem(error)), "error")
        return redirect(url_for(".failed"))
    if not requeued:
        flash(_("Job %(job_id)s is not among the failed jobs any more.", job_id=job_id), "error")
        return redirect(url_for(".failed"))
    record(platform_actor(), "queue.requeue", tenant_id=None, target=job_id)
    db.session.commit()
    flash(_("Job %(job_id)s is back on its queue.", job_id=job_id))
    return redirect(url_for(".failed"))


@bp.post("/failed/requeue-all")
def requeue_all():
    _confirm_button()
    requeued, problem = [], None
    try:
        conn = _redis()
        for name in QUEUES:
            registry = FailedJobRegistry(queue=Queue(name, connection=conn))
            for job_id in registry.get_job_ids(cleanup=False):
                if requeue_failed(conn, job_id):
                    requeued.append(job_id)
    except (RedisUnavailable, RedisError) as error:  # the jobs requeued so far stay requeued
        problem = _problem(error)
    actor = platform_actor()
    for job_id in requeued:  # one audit event per job, like a single requeue
        record(actor, "queue.requeue", tenant_id=None, target=job_id)
    db.session.commit()
    if requeued:
        flash(ngettext("%(num)d failed job put back on their queues.",
                       "%(num)d failed jobs put back on their queues.", len(requeued)))
    elif problem is None:
        flash(_("There were no failed jobs to requeue."))
    if problem is not None:
        flash(_("Not every failed job was requeued. %(problem)s", problem=problem), "error")
    return redirect(url_for(".failed"))
