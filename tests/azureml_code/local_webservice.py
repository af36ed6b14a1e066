# Deploy locally, call, read the logs, delete: what most notebooks did before ACI or AKS.
import json
import sys

from bundler.azureml.core import Workspace, Environment
from bundler.azureml.core.model import Model, InferenceConfig
from bundler.azureml.core.webservice import LocalWebservice, Webservice

ws = Workspace.from_config()
model = Model(ws, name="sklearn_regression_model")
env = Environment.from_conda_specification(name="myenv", file_path="myenv.yml")
inference_config = InferenceConfig(entry_script="score.py", source_directory=".", environment=env)
deployment_config = LocalWebservice.deploy_configuration(port=int(sys.argv[1]))
service = Model.deploy(ws, "myservice", [model], inference_config, deployment_config)
service.wait_for_deployment(show_output=True)
print("scoring uri:", service.scoring_uri)

input_data = json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]})
print("predictions:", json.dumps(service.run(input_data)))
assert Webservice(ws, "myservice") is service
print("logs:", "listening on" in service.get_logs())
service.delete()
print("state:", service.state)
