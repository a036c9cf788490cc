"""An application that takes the hand-off: each finished job, POSTed by server.py or cronjob.py (docs/handoff.md).

It does the three things every consumer must: verify the Standard Webhooks signature (any of the
specification's libraries does; here `standardwebhooks`), take each event once although it may arrive more
than once (the dedup is one INSERT keyed by `webhook-id`, in the same transaction as the work), and read the
transcript where it is stored. Here the work is writing the transcript's words to OUTPUT_DIR/<job_id>.txt.

    HANDOFF_SECRET=whsec_... python examples/handoff_consumer.py --port 8100
    # and, for server.py and cronjob.py: HANDOFF_URL=http://127.0.0.1:8100/handoff HANDOFF_SECRET=whsec_...
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from pathlib import Path

from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def create_app(secret: str, database: Path, output: Path) -> Flask:
    app = Flask(__name__)
    webhook = Webhook(secret)
    output.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE IF NOT EXISTS seen (webhook_id TEXT PRIMARY KEY)")

    @app.post("/handoff")
    def handoff() -> tuple[str, int]:
        try:
            event = webhook.verify(request.get_data(), dict(request.headers))
        except WebhookVerificationError:
            return "bad signature", 401
        with sqlite3.connect(database) as db:  # one transaction: the event is marked seen only if the work is done
            if db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (request.headers["webhook-id"],)).rowcount == 0:
                return "duplicate", 200  # taken before: at least once means sometimes twice
            take(event, output)
        return "", 204

    return app


def take(event: dict, output: Path) -> None:
    """The application's own work: here, the transcript's words in a text file (a failure: its reason)."""
    data = event["data"]
    if event["type"] == "transcript.ready":
        # A local path (this machine: TRANSCRIPTS_MODE must let us read it) or, with TRANSCRIPTS_URL, s3://...
        transcript = json.loads(Path(data["transcript"]).read_text())
        text = " ".join(result["alternatives"][0]["content"] for result in transcript["results"])
    else:
        text = f"[{data['status']}] {data['error']}"
    (output / f"{data['job_id'] or data['reference']}.txt").write_text(text + "\n")
    print(f"took {event['type']} for job {data['job_id']} ({data['audio']})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--database", type=Path, default=Path("consumer.db"), help="where seen ids are kept")
    parser.add_argument("--output", type=Path, default=Path("handed-on"), help="where <job_id>.txt is written")
    args = parser.parse_args()
    app = create_app(os.environ["HANDOFF_SECRET"], args.database, args.output)
    app.run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
