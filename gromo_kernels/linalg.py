"""Public solves: validate -> pick dtype -> call. (Being written.)"""

__all__: list[str] = []
