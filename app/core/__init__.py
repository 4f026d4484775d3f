"""The framework under every plugin: request groundwork, lifecycle, health, OpenAPI, config schema,
guards, events, background tasks and the JSON codec. Nothing here imports a plugin or a capability
package."""
