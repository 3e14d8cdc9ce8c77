"""The private `format` sub-agent."""
import os


def format_greeting(input):
    punctuation = os.environ.get("HELLO_PUNCTUATION", ".")
    return {"text": "%s, %s%s" % (input["greeting"], input["name"], punctuation)}
