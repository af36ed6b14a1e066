from bundler.azureml.core import Workspace, Environment
from bundler.azureml.core.model import Model, InferenceConfig
from bundler.azureml.core.conda_dependencies import CondaDependencies

ws = Workspace.from_config()
model = Model.register(workspace=ws, model_path="sklearn_regression_model.pkl",
                       model_name="sklearn_regression_model",
                       tags={"area": "diabetes"}, description="Ridge on diabetes")
env = Environment.from_conda_specification(name="myenv", file_path="myenv.yml")
inference_config = InferenceConfig(entry_script="score.py", source_directory=".", environment=env)

package = Model.package(ws, [model], inference_config, generate_dockerfile=True)
package.wait_for_creation(show_output=True)
package.save("./imagefiles")
acr = package.get_container_registry()
print("Address:", acr.address); print("Username:", acr.username); print("Password:", acr.password)
