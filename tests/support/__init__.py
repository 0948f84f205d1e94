"""What the tests share, one module per kind of thing.

``processes``  start, stop and kill a suite process (``python -m <package>``) and wait for it to be healthy
``stack``      a real gateway → balancer → apiservers stack, and what scenarios do on it
``servers``    PostgreSQL / Redis for fixtures: embedded or external, scratch roots, resetting their state
``clock``      the hand-driven clock that unit tests inject instead of sleeping
``polling``    waiting for a condition with a deadline
``markers``    which tests may start servers, and the guard that enforces it
"""
