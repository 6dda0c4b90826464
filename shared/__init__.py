"""The project's common library: media decoding, signal maths, data layout, settings, serving client.

Used by training and by every service alike, so that a window is prepared the same way for both.
"""
