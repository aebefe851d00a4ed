"""Public statistics entry points: validate -> pick backend -> call. (Being written.)"""

__all__: list[str] = []
