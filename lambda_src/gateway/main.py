"""`app` for uvicorn (the Lambda Web Adapter runs `uvicorn gateway.main:app`)."""

from gateway.app import create_app
from gateway.settings import Settings

app = create_app(Settings.from_env())
