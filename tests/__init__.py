"""agentbot's tests: a folder per part of bot/, the doubles in fakes/, whole flows in flow/."""
