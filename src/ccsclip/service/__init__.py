"""The serving transports (design §8): BentoML HTTP and grpcio over one engine and one schema set.

Nothing under this package imports torch or open_clip (a test checks `sys.modules` in a fresh
interpreter): the serving image ships without them.
"""
