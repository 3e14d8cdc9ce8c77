"""Handlers of hello-python.

`handler(input, context)` is the main export; `shout` is a public sub-agent
written as a coroutine. Both reach the private `format` sub-agent through
`context.call`, which PAR routes to a worker of this same package version.
"""
import logging
import os

log = logging.getLogger(__name__)


def handler(input, context):
    name = (input or {}).get("name", "world")
    log.info("greeting %s", name)
    text = context.call("format", {"greeting": os.environ.get("GREETING", "Hi"), "name": name})
    return {"message": text["text"], "caller": context.subject}


async def shout(input, context):
    name = (input or {}).get("name", "world")
    text = await context.call("format", {"greeting": os.environ.get("GREETING", "Hi"),
                                         "name": name})
    context.usage(characters=len(text["text"]))
    return {"message": text["text"].upper()}
