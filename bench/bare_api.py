"""The baseline of bench/api_load.py: FastAPI returning the same JSON bodies from memory.

BARE_BODIES names a JSON file mapping each request path (with its query) to a file of the body.
"""

import json
import os
from pathlib import Path

from fastapi import FastAPI, Request, Response

BODIES = {
    path: Path(file).read_bytes()
    for path, file in json.loads(Path(os.environ["BARE_BODIES"]).read_text()).items()
}
app = FastAPI()


@app.get("/{rest:path}")
async def serve(request: Request, rest: str) -> Response:
    key = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Response(content=BODIES[key], media_type="application/json")
