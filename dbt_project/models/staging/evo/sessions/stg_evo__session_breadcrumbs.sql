with

source as (

    select * from {{ source('evo', 'session_breadcrumbs') }}

),

renamed as (

    select
        ----------  ids
        session_id,
        cast(position as integer) as breadcrumb_position,
        customer_id,

        ----------  strings
        customer_name,

        ----------  lineage
        cast(partition_date as date) as partition_date,
        cast(synced_at as timestamp with time zone) as synced_at

    from source

)

select * from renamed
