"""Send audits to the workers by task name, over the Celery broker, without importing the workers.

A send that fails (broker down) returns False: the audit stays stored as queued and the reaper enqueues it once
the broker answers again, so an accepted audit is never lost.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property

from faithaudit.api_schemas import DELIVER_CALLBACK_TASK, RUN_AUDIT_TASK, RUN_JOB_TASK, RUN_SHARD_TASK

log = logging.getLogger(__name__)


def callback_queue(queue_name: str) -> str:
    """The queue of webhook deliveries beside the audit queue ``queue_name`` (workers consume both)."""
    return f"{queue_name}.callbacks"


@dataclass
class Enqueuer:
    """``queue_name`` takes jobs and every audit not routed elsewhere; ``model_queues`` (model -> queue, from
    ``Settings.model_queues``) names the other audit queues, whose depth counts too."""

    broker_url: str
    queue_name: str
    connect_timeout: float = 2.0
    model_queues: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings) -> Enqueuer:
        return cls(settings.broker_url, settings.queue_name, model_queues=dict(settings.model_queues))

    @property
    def audit_queues(self) -> list[str]:
        return list(dict.fromkeys([self.queue_name, *self.model_queues.values()]))

    @cached_property
    def app(self):
        from celery import Celery

        app = Celery("faithaudit-client", broker=self.broker_url)
        app.conf.update(
            broker_connection_timeout=self.connect_timeout,
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            task_default_queue=self.queue_name,
        )
        return app

    def send(self, audit_id: str, queue: str | None = None) -> bool:
        """The audit to ``queue`` (its model's, ``Settings.queue_for``), or to the default queue."""
        return self._send(RUN_AUDIT_TASK, audit_id, queue=queue)

    def send_shards(self, audit_id: str, idxs: list[int], queue: str | None = None) -> bool:
        """The shards of a split audit (``workers.sharding``) as one Celery group, on the audit's queue: any worker
        of that queue takes any of them."""
        from celery import group

        queue = queue or self.queue_name
        try:
            group(self.app.signature(RUN_SHARD_TASK, args=[audit_id, i], queue=queue) for i in idxs).apply_async(
                retry=False
            )
        except Exception as exc:  # the broker is down: the reaper sends them once it answers
            log.warning("could not enqueue the shards %s of %s: %s", idxs, audit_id, exc)
            return False
        return True

    def send_job(self, job_id: str) -> bool:
        """A corpus build or a gate suite (``RUN_JOB_TASK``)."""
        return self._send(RUN_JOB_TASK, job_id)

    def send_callback(self, audit_id: str) -> bool:
        """The ended audit's webhook, delivered (and retried) by a worker task, never inline; on a queue of its
        own, so the audit queue's depth counts audits and jobs only (the reaper compares the two)."""
        return self._send(DELIVER_CALLBACK_TASK, audit_id, queue=self.callback_queue)

    @property
    def callback_queue(self) -> str:
        return callback_queue(self.queue_name)

    def _send(self, task: str, item_id: str, *, queue: str | None = None) -> bool:
        try:
            self.app.send_task(task, args=[item_id], queue=queue or self.queue_name, retry=False)
        except Exception as exc:  # the broker is down or unreachable: the reaper retries later
            log.warning("could not enqueue %s %s: %s", task, item_id, exc)
            return False
        return True

    def prepare(self) -> None:
        """Build the Celery client and load the broker's transport (kombu's, and the redis client: about half a
        second on the first send otherwise), without connecting: the broker may be down. Also build what a first
        send builds lazily (the result backend, the router, the task sender, the producer pool): Celery does not
        lock those, so a cold process sending from ten threads at once built them ten times (35 ms each)."""
        with self.app.connection_for_write():
            pass
        app = self.app
        app.backend, app.amqp.router, app.amqp.send_task_message, app.producer_pool  # noqa: B018 - built once here

    def connect_pool(self, connections: int = 2) -> int:
        """Open ``connections`` of the producer pool's broker connections now (the API's senders: its relay thread
        and its reaper), so that the first sends of a burst do not open them while requests wait; how many.
        Raises at the first that fails (one try, no retry sleep): the broker is down."""
        count = min(connections, int(self.app.conf.broker_pool_limit or connections))
        with ExitStack() as held:  # held together, so that each acquire opens another connection
            for _ in range(count):
                producer = held.enter_context(self.app.producer_pool.acquire(block=True))
                producer.connection.ensure_connection(max_retries=0, timeout=self.connect_timeout)
        return count

    def ping(self) -> bool:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.connect_timeout)
        except Exception:
            return False
        return True

    def queue_depth(self) -> int | None:
        """Messages waiting in the Redis lists of the audit queues; None when unknown."""
        try:
            with self.app.connection_for_write() as conn:
                client = conn.default_channel.client
                return sum(int(client.llen(q)) for q in self.audit_queues)
        except Exception:
            return None

    def instance_id(self) -> str | None:
        """The broker's instance (Redis ``run_id``): a new one means it restarted and may have lost messages."""
        try:
            with self.app.connection_for_write() as conn:
                return str(conn.default_channel.client.info("server")["run_id"])
        except Exception:
            return None

    def purge(self) -> int | None:
        """Drop every message waiting in this queue and its webhook queue (tests and fuzz runs on a private
        queue); how many."""
        try:
            with self.app.connection_for_write() as conn:
                channel = conn.default_channel
                return sum(channel.queue_purge(q) or 0 for q in [*self.audit_queues, self.callback_queue])
        except Exception:
            return None
