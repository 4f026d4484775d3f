"""`run.py cluster`: N `serve` processes behind nginx on one machine.

The supervisor binds 127.0.0.1:P+1 … P+N itself and hands each instance the
listening socket of its port (`serve --listen-fd`); nginx listens on
`[server] host`:P with `deploy/nginx/nginx.conf` and the two include files
rendered for these ports. Because the supervisor keeps every socket open, an
instance can be replaced (SIGHUP: a rolling restart) without its port ever
refusing or resetting a connection: the old process drains while the new one
starts on the same socket, and what arrives in between waits in the kernel's
accept queue.

    supervisor.py   the cluster's life: start, signals, rolling restart, stop
    slot.py         one port: its socket and the process serving it, restarted with back-off
    instance.py     one `run.py serve` process: spawn, readiness, stop
    nginx.py        nginx's directory under <data_dir>/cluster/nginx and its process
    nginx_files.py  the two include files, rendered from the config (pure)
    preflight.py    what makes the cluster refuse to start
    backoff.py      restart delays (pure)
    child.py        starting a child process that dies with the supervisor; its output
"""
