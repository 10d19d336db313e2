"""Coding agents in the sandbox: `rcc claude`, `rcc codex`, `rcc gemini`, `rcc aider`, `rcc shell`.

profiles.py  one frozen AgentProfile per agent (executable, endpoints, env, state): data and pure functions
find.py      finds the executable (PATH, native installer, npm prefixes, nvm) and its install tree
state.py     rcc's per-agent state dir (mounted at ~/.claude etc.) and the explicit settings import
cli.py       parses the command line and hands a Session to rcc.runner.run_session
"""
