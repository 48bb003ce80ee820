"""SRT for Fanout: a ctypes binding over the system libsrt 1.5 and the pure cores around it.

- ``lib``: the library's prototypes, constants and ``CBytePerfMon`` layout.
- ``socket``: ``SrtSocket`` (options, bind/listen/accept/connect, messages, statistics), the listen
  hook that accepts or refuses a caller during its handshake.
- ``poller``: one thread in ``srt_epoll_uwait`` handing messages to asyncio through bounded inboxes.
- ``liblog``: libsrt's log bridged into Python (why libsrt itself refused a handshake).
- ``streamid``: the access-control and plain stream-id forms (pure).
- ``stats``: per-second transport figures and the degraded-link verdict (pure).
"""
