"""Local stand-ins for the clouds: real HTTP servers on 127.0.0.1.

A server, never a client of the tool: nothing here imports flows/ or tasks/.
"""
