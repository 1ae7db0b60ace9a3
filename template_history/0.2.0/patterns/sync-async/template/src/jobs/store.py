"""How jobs live in Redis: key names, job records, and the scripts that change them atomically.

A job is a hash ``<prefix>:job:<id>`` (status, input, result, timestamps; it expires) plus one
entry ``{job: <id>}`` in the stream ``<prefix>:jobs``, read by the consumer group ``workers``.
An entry stays in the group's pending list while a worker holds it; the worker records the result,
acknowledges and deletes the entry in one script, so a job is either still held or finished —
never both, never neither. A worker that dies holding an entry leaves it pending; after
``CLAIM_IDLE_MS`` another worker claims it (XAUTOCLAIM) and runs the job again.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import orjson

from src.jobs.config import KEY_PREFIX

GROUP = "workers"
STREAM = f"{KEY_PREFIX}:jobs"
JOB_ID = re.compile(r"[0-9a-f]{32}")

Status = Literal["queued", "running", "done", "failed"]

# KEYS: stream, job. ARGV: job id, input, now, ttl, max queue length.
# 0 when the queue is full; the record and the entry are written together or not at all.
ENQUEUE = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return 0
end
redis.call('HSET', KEYS[2], 'status', 'queued', 'input', ARGV[2], 'created', ARGV[3],
  'attempts', 0)
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('XADD', KEYS[1], '*', 'job', ARGV[1])
return 1
"""

# KEYS: job. ARGV: worker, now, max attempts.
# {'running', input} when the worker may run the job; otherwise why not.
START = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'expired'}
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'done' or status == 'failed' then
  return {status}
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished', ARGV[2], 'error',
    'given up after ' .. attempts .. ' attempts: each worker that took it stopped first')
  return {'gave-up'}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started', ARGV[2],
  'attempts', attempts + 1)
return {'running', redis.call('HGET', KEYS[1], 'input')}
"""

# KEYS: stream, job. ARGV: group, worker, entry id, ttl, then field, value, ... to record.
# 0 when the worker no longer holds the entry (another one took it over): nothing is written.
FINISH = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #held == 0 or held[1][2] ~= ARGV[2] then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if #ARGV > 4 then
    redis.call('HSET', KEYS[2], unpack(ARGV, 5))
  end
  redis.call('HDEL', KEYS[2], 'input')
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"""


def job_key(job_id: str) -> str:
    """The Redis key of a job's record."""
    return f"{KEY_PREFIX}:job:{job_id}"


def new_job_id() -> str:
    """A fresh, unguessable job ID."""
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    """Whether ``text`` could be a job ID at all (anything else is unknown without asking)."""
    return JOB_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class JobRecord:
    """A job as ``GET /job/{job_id}`` reports it."""

    job_id: str
    status: Status
    attempts: int
    created: float | None
    started: float | None
    finished: float | None
    prediction: Any
    labels: Any
    error: str | None

    @classmethod
    def from_hash(cls, job_id: str, fields: dict[bytes, bytes]) -> JobRecord:
        """Read a record from the hash Redis returned."""
        text = {key.decode(): value.decode() for key, value in fields.items()}
        return cls(
            job_id=job_id,
            status=cast(Status, text["status"]),
            attempts=int(text.get("attempts", "0")),
            created=_number(text.get("created")),
            started=_number(text.get("started")),
            finished=_number(text.get("finished")),
            prediction=orjson.loads(text["prediction"]) if "prediction" in text else None,
            labels=orjson.loads(text["labels"]) if "labels" in text else None,
            error=text.get("error"),
        )

    def as_dict(self) -> dict[str, Any]:
        """The response body."""
        return asdict(self)


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)
