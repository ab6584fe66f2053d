"""A gost observer plugin in Python: keeps a running tally per service
(and per client for handler events) and appends one JSON line per event
to /data/<config.file>, with the tally so far.

Build (componentize-py from PyPI, pinned in .ci/run):
    componentize-py -d ../../../wit -w observer componentize app -o tally.wasm
"""

import json

import wit_world
from wit_world.imports import runtime, types
from componentize_py_types import Err

CONFIG = None
TALLY = {}


def settings():
    global CONFIG
    if CONFIG is None:
        CONFIG = json.loads(runtime.config() or "{}")
    return CONFIG


class WitWorld(wit_world.WitWorld):
    def observe(self, events):
        path = "/data/" + settings().get("file", "tally.jsonl")
        lines = []
        for ev in events:
            key = ev.service if not ev.client else ev.service + "/" + ev.client
            line = {"kind": ev.kind, "service": ev.service, "client": ev.client}
            if isinstance(ev.data, wit_world.EventData_Status):
                line["state"] = ev.data.value.state
            else:
                s = ev.data.value
                TALLY[key] = TALLY.get(key, 0) + 1
                line["totalConns"] = s.total_conns
                line["currentConns"] = s.current_conns
                line["inputBytes"] = s.input_bytes
                line["outputBytes"] = s.output_bytes
                line["reports"] = TALLY[key]
            lines.append(json.dumps(line, sort_keys=True))
        try:
            with open(path, "a") as f:
                f.write("".join(l + "\n" for l in lines))
        except OSError as e:
            raise Err("cannot write %s: %s" % (path, e))
        runtime.log(types.Level.DEBUG, "tally: %d events" % len(events))
