"""Piccolo configuration: the engine comes from Lightbox's settings (portal.db swaps it at run time)."""

from piccolo.conf.apps import AppRegistry

from portal import db, settings

DB = db.make_engine(settings.current())

APP_REGISTRY = AppRegistry(apps=["portal.piccolo_app"])
