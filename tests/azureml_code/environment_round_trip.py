# An environment registered once, and fetched by name later (another notebook).
from bundler.azureml.core import Workspace, Environment
from bundler.azureml.core.conda_dependencies import CondaDependencies

ws = Workspace.from_config()
env = Environment.from_conda_specification(name="myenv", file_path="myenv.yml")
env.docker.base_image = "python:3.11-slim"
env.register(workspace=ws)
env.python.conda_dependencies.add_pip_package("requests")
registered = env.register(workspace=ws)
print("registered:", registered.name, registered.version)

again = Environment.get(workspace=ws, name="myenv")
print("latest:", again.version, again.docker.base_image)
print("packages:", sorted(again.python.conda_dependencies.pip_packages))
first = Environment.get(ws, "myenv", version="1")
print("first:", sorted(first.python.conda_dependencies.pip_packages))
print("all:", sorted(Environment.list(workspace=ws)))
