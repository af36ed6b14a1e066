# The environment written in code, as many Azure ML notebooks did.
from bundler.azureml.core import Workspace, Environment
from bundler.azureml.core.model import Model, InferenceConfig
from bundler.azureml.core.conda_dependencies import CondaDependencies

ws = Workspace.from_config()
model = Model(ws, name="sklearn_regression_model")
env = Environment("myenv")
env.python.conda_dependencies = CondaDependencies.create(conda_packages=["scikit-learn"],
                                                          pip_packages=["azureml-defaults"])
print(env.python.conda_dependencies.serialize_to_string())
inference_config = InferenceConfig(entry_script="score.py", environment=env)
package = Model.package(ws, [model], inference_config, generate_dockerfile=True)
package.wait_for_creation(show_output=True)
package.save("./imagefiles-create")
