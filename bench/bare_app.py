"""The floor: a Flask endpoint that reads the notification body and answers 200, keeping nothing.

    gunicorn bench.bare_app:app

It shows what the framework and the WSGI server cost on their own; the gap between it and the lean
handler is the price of durability, and the gap between the lean handler and our server is ours.
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhook")
def notification() -> tuple[str, int]:
    request.get_data()
    return "", 200


@app.get("/healthz")
def healthz() -> tuple[str, int]:
    return "ok", 200
