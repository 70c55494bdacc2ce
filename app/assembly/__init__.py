"""The assembly, above every domain: the API application (`create_app`: its routes, its
lifespan, its OpenAPI document) put together from the domains' controllers and the HTTP
toolkit (`app.http`), which itself imports no domain."""
